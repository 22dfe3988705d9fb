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
  created_at DOUBLE PRECISION NOT NULL,
  updated_at DOUBLE PRECISION NOT NULL,
  finished_at DOUBLE PRECISION,
  owner TEXT,
  epoch BIGINT NOT NULL DEFAULT 0,
  lease_expires_at DOUBLE PRECISION,
  wake_at DOUBLE PRECISION,
  trace_id TEXT NOT NULL,
  generation INTEGER NOT NULL DEFAULT 0,
  seq_base INTEGER NOT NULL DEFAULT 0,
  cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
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
  started_at DOUBLE PRECISION,
  finished_at DOUBLE PRECISION,
  wake_at DOUBLE PRECISION,
  meta TEXT,
  PRIMARY KEY (run_id, seq)
);

CREATE TABLE signals (
  id BIGSERIAL PRIMARY KEY,
  run_id TEXT NOT NULL,
  name TEXT NOT NULL,
  payload TEXT,
  created_at DOUBLE PRECISION NOT NULL,
  consumed_seq INTEGER
);
CREATE INDEX signals_open ON signals (run_id, name) WHERE consumed_seq IS NULL;

CREATE TABLE dead_letters (
  run_id TEXT PRIMARY KEY,
  workflow TEXT NOT NULL,
  version TEXT NOT NULL,
  reason TEXT NOT NULL,
  error TEXT,
  created_at DOUBLE PRECISION NOT NULL,
  retries INTEGER NOT NULL DEFAULT 0,
  resolved_at DOUBLE PRECISION
);

CREATE TABLE flags (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE kv (
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value BYTEA NOT NULL,
  expires_at DOUBLE PRECISION,
  PRIMARY KEY (namespace, key)
);

CREATE TABLE counters (
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value DOUBLE PRECISION NOT NULL DEFAULT 0,
  updated_at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (namespace, key)
);

CREATE TABLE outbox (
  id BIGSERIAL PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  run_id TEXT,
  payload TEXT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL,
  published_at DOUBLE PRECISION
);

CREATE OR REPLACE FUNCTION stalwart_notify_run() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('stalwart_runs', NEW.wf_key);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER runs_notify AFTER INSERT ON runs FOR EACH ROW EXECUTE FUNCTION stalwart_notify_run();
CREATE TRIGGER runs_wake AFTER UPDATE OF status, wake_at ON runs FOR EACH ROW
  WHEN (NEW.status = 'PENDING' OR (NEW.status = 'WAITING' AND NEW.wake_at IS NOT NULL AND NEW.wake_at <> COALESCE(OLD.wake_at, -1)))
  EXECUTE FUNCTION stalwart_notify_run();
