-- Governance: the append-only audit chain, its signed checkpoints, retention purges, reviews and
-- policy versions. Each audit entry is hashed as sha256(prev_hash || seq as 8-byte big-endian ||
-- body), body being canonical ASCII JSON. Writers insert through chain_insert_sql('sqlite')
-- (stalwart.governance), which needs the stalwart_chain_hash() function that the governance layer
-- registers on the connection; BEGIN IMMEDIATE serialises writers, so the chain has one order.
CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY,
  body TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL,
  event_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.event_id')) VIRTUAL,
  ts REAL GENERATED ALWAYS AS (json_extract(body, '$.timestamp')) VIRTUAL,
  event_type TEXT GENERATED ALWAYS AS (json_extract(body, '$.event_type')) VIRTUAL,
  org_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.org_id')) VIRTUAL,
  user_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.user_id')) VIRTUAL,
  run_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.run_id')) VIRTUAL
);
CREATE INDEX audit_log_event ON audit_log (event_id);
CREATE INDEX audit_log_run ON audit_log (run_id);

-- A recorded purge (retention) is the only thing that lets a prefix of the log be deleted.
CREATE TABLE audit_purges (
  id INTEGER PRIMARY KEY,
  upto_seq INTEGER NOT NULL,
  anchor_hash BLOB NOT NULL,
  purged_at REAL NOT NULL,
  reason TEXT NOT NULL
);

CREATE TRIGGER audit_log_link BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT COALESCE((SELECT MAX(seq) FROM audit_log) + 1, 0)
  OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), zeroblob(32))
BEGIN
  SELECT RAISE(ABORT, 'audit_log: an entry must extend the chain head');
END;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.seq > COALESCE((SELECT MAX(upto_seq) FROM audit_purges), -1)
BEGIN
  SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_purges_no_update BEFORE UPDATE ON audit_purges
BEGIN
  SELECT RAISE(ABORT, 'audit_purges is append-only');
END;

CREATE TRIGGER audit_purges_no_delete BEFORE DELETE ON audit_purges
BEGIN
  SELECT RAISE(ABORT, 'audit_purges is append-only');
END;

-- Ed25519-signed checkpoints over the chain head and the RFC 6962 Merkle root; frontier holds the
-- roots of the perfect subtrees (32 bytes each) so the next checkpoint extends it incrementally.
CREATE TABLE audit_checkpoints (
  tree_size INTEGER PRIMARY KEY,
  head_hash BLOB NOT NULL,
  root_hash BLOB NOT NULL,
  frontier BLOB NOT NULL,
  signed_at REAL NOT NULL,
  key_id TEXT NOT NULL,
  signature BLOB NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TABLE reviews (
  id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  step_seq INTEGER NOT NULL,
  org TEXT NOT NULL DEFAULT '',
  requester TEXT NOT NULL,
  proposed_action TEXT NOT NULL,
  risk TEXT,
  policy TEXT,
  severity TEXT NOT NULL,
  tier INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL,
  created_at REAL NOT NULL,
  due_at REAL,
  decided_at REAL,
  reviewer TEXT,
  decision TEXT,
  args TEXT,
  note TEXT,
  sampled INTEGER NOT NULL DEFAULT 0,
  approvals TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX reviews_step ON reviews (run_id, step_seq);
CREATE INDEX reviews_open ON reviews (status, due_at);

CREATE TABLE policy_versions (
  content_hash TEXT PRIMARY KEY,
  label TEXT NOT NULL,
  bundle TEXT NOT NULL,
  proposed_by TEXT,
  approved_by TEXT,
  created_at REAL NOT NULL
);

CREATE TABLE policy_changes (
  id TEXT PRIMARY KEY,
  label TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  bundle TEXT NOT NULL,
  proposer TEXT NOT NULL,
  status TEXT NOT NULL,
  approver TEXT,
  created_at REAL NOT NULL,
  decided_at REAL
);
