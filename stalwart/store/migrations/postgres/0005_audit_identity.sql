-- The audit log's identity: a random id created once, with the database, and never changed.
-- Signed checkpoints carry it, and anchors are kept under <anchor_url>/<log_id>/, so two databases
-- never share or confuse their anchors.
CREATE TABLE audit_identity (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  log_id TEXT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL
);

INSERT INTO audit_identity (id, log_id, created_at)
VALUES (1, replace(gen_random_uuid()::text, '-', ''), extract(epoch FROM clock_timestamp()));

CREATE TRIGGER audit_identity_append_only BEFORE UPDATE OR DELETE ON audit_identity
  FOR EACH ROW EXECUTE FUNCTION stalwart_append_only();
CREATE TRIGGER audit_identity_no_truncate BEFORE TRUNCATE ON audit_identity
  FOR EACH STATEMENT EXECUTE FUNCTION stalwart_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_identity FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'stalwart_runtime') THEN
    REVOKE UPDATE, DELETE, TRUNCATE ON audit_identity FROM stalwart_runtime;
    GRANT SELECT ON audit_identity TO stalwart_runtime;
  END IF;
END
$$;

-- Checkpoints signed before this migration carry no log id ('').
ALTER TABLE audit_checkpoints ADD COLUMN log_id TEXT NOT NULL DEFAULT '';
