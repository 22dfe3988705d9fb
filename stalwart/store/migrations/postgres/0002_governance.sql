-- Governance: the append-only audit chain, its signed checkpoints, retention purges, reviews and
-- policy versions. Each audit entry is hashed as sha256(prev_hash || seq as 8-byte big-endian ||
-- body), body being canonical ASCII JSON. Writers insert only the body; the BEFORE INSERT trigger
-- takes the chain head (audit_head, one row, locked until commit), so concurrent workers append
-- in one total order and no writer can choose its own seq or hashes.
CREATE TABLE audit_log (
  seq BIGINT PRIMARY KEY,
  body TEXT NOT NULL,
  prev_hash BYTEA NOT NULL,
  hash BYTEA NOT NULL,
  event_id TEXT GENERATED ALWAYS AS ((body::jsonb) ->> 'event_id') STORED,
  ts DOUBLE PRECISION GENERATED ALWAYS AS (((body::jsonb) ->> 'timestamp')::double precision) STORED,
  event_type TEXT GENERATED ALWAYS AS ((body::jsonb) ->> 'event_type') STORED,
  org_id TEXT GENERATED ALWAYS AS ((body::jsonb) ->> 'org_id') STORED,
  user_id TEXT GENERATED ALWAYS AS ((body::jsonb) ->> 'user_id') STORED,
  run_id TEXT GENERATED ALWAYS AS ((body::jsonb) ->> 'run_id') STORED
);
CREATE INDEX audit_log_event ON audit_log (event_id);
CREATE INDEX audit_log_run ON audit_log (run_id);

CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL,
  prev BYTEA NOT NULL,
  hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, prev, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'));

CREATE TABLE audit_purges (
  id BIGSERIAL PRIMARY KEY,
  upto_seq BIGINT NOT NULL,
  anchor_hash BYTEA NOT NULL,
  purged_at DOUBLE PRECISION NOT NULL,
  reason TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
  tree_size BIGINT PRIMARY KEY,
  head_hash BYTEA NOT NULL,
  root_hash BYTEA NOT NULL,
  frontier BYTEA NOT NULL,
  signed_at DOUBLE PRECISION NOT NULL,
  key_id TEXT NOT NULL,
  signature BYTEA NOT NULL
);

CREATE FUNCTION stalwart_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE audit_head
     SET seq = seq + 1, prev = hash, hash = sha256(hash || int8send(seq) || convert_to(NEW.body, 'UTF8'))
   WHERE id = 1
  RETURNING seq - 1, prev, hash INTO NEW.seq, NEW.prev_hash, NEW.hash;
  RETURN NEW;
END
$$;

CREATE FUNCTION stalwart_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_log' THEN
    IF OLD.seq <= (SELECT COALESCE(MAX(upto_seq), -1) FROM audit_purges) THEN
      RETURN OLD;
    END IF;
  END IF;
  RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION stalwart_audit_chain();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION stalwart_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION stalwart_append_only();
CREATE TRIGGER audit_purges_append_only BEFORE UPDATE OR DELETE ON audit_purges
  FOR EACH ROW EXECUTE FUNCTION stalwart_append_only();
CREATE TRIGGER audit_purges_no_truncate BEFORE TRUNCATE ON audit_purges
  FOR EACH STATEMENT EXECUTE FUNCTION stalwart_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION stalwart_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION stalwart_append_only();

-- The runtime role (when the deployment creates one) may read and append, never rewrite.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_purges, audit_checkpoints FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'stalwart_runtime') THEN
    REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, audit_purges, audit_checkpoints FROM stalwart_runtime;
    GRANT SELECT, INSERT ON audit_log, audit_purges, audit_checkpoints TO stalwart_runtime;
    GRANT SELECT, UPDATE ON audit_head TO stalwart_runtime;
  END IF;
END
$$;

CREATE TABLE reviews (
  id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  step_seq BIGINT NOT NULL,
  org TEXT NOT NULL DEFAULT '',
  requester TEXT NOT NULL,
  proposed_action TEXT NOT NULL,
  risk TEXT,
  policy TEXT,
  severity TEXT NOT NULL,
  tier INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL,
  due_at DOUBLE PRECISION,
  decided_at DOUBLE PRECISION,
  reviewer TEXT,
  decision TEXT,
  args TEXT,
  note TEXT,
  sampled BOOLEAN NOT NULL DEFAULT FALSE,
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
  created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE policy_changes (
  id TEXT PRIMARY KEY,
  label TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  bundle TEXT NOT NULL,
  proposer TEXT NOT NULL,
  status TEXT NOT NULL,
  approver TEXT,
  created_at DOUBLE PRECISION NOT NULL,
  decided_at DOUBLE PRECISION
);
