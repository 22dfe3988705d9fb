CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  workflow TEXT NOT NULL,
  version TEXT NOT NULL,
  wf_key TEXT NOT NULL,
  status TEXT NOT NULL,
  input TEXT NOT NULL,
  output TEXT,
  error TEXT,
  org TEXT NOT NULL DEFAULT '',
  user_id TEXT NOT NULL DEFAULT '',
  idempotency_key TEXT,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL,
  finished_at REAL,
  owner TEXT,
  epoch INTEGER NOT NULL DEFAULT 0,
  lease_expires_at REAL,
  wake_at REAL,
  trace_id TEXT NOT NULL,
  generation INTEGER NOT NULL DEFAULT 0,
  seq_base INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  phase TEXT NOT NULL DEFAULT 'run',
  parent_id TEXT,
  meta TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX runs_idempotency ON runs (org, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_pending ON runs (status, wake_at) WHERE status IN ('PENDING', 'WAITING');
CREATE INDEX runs_running ON runs (lease_expires_at) WHERE status = 'RUNNING';
CREATE INDEX runs_created ON runs (created_at);

CREATE TABLE journal (
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  result TEXT,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 1,
  started_at REAL,
  finished_at REAL,
  wake_at REAL,
  meta TEXT,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE signals (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL,
  name TEXT NOT NULL,
  payload TEXT,
  created_at REAL NOT NULL,
  consumed_seq INTEGER
);
CREATE INDEX signals_open ON signals (run_id, name) WHERE consumed_seq IS NULL;

CREATE TABLE dead_letters (
  run_id TEXT PRIMARY KEY,
  workflow TEXT NOT NULL,
  version TEXT NOT NULL,
  reason TEXT NOT NULL,
  error TEXT,
  created_at REAL NOT NULL,
  retries INTEGER NOT NULL DEFAULT 0,
  resolved_at REAL
);

CREATE TABLE flags (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at REAL NOT NULL
);

CREATE TABLE kv (
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value BLOB NOT NULL,
  expires_at REAL,
  PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

CREATE TABLE counters (
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value REAL NOT NULL DEFAULT 0,
  updated_at REAL NOT NULL,
  PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  run_id TEXT,
  payload TEXT NOT NULL,
  created_at REAL NOT NULL,
  published_at REAL
);
