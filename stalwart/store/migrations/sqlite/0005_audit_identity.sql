-- The audit log's identity: a random id created once, with the database, and never changed.
-- Signed checkpoints carry it, and anchors are kept under <anchor_url>/<log_id>/, so two databases
-- never share or confuse their anchors.
CREATE TABLE audit_identity (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  log_id TEXT NOT NULL,
  created_at REAL NOT NULL
);

INSERT INTO audit_identity (id, log_id, created_at)
VALUES (1, lower(hex(randomblob(16))), (julianday('now') - 2440587.5) * 86400.0);

CREATE TRIGGER audit_identity_no_update BEFORE UPDATE ON audit_identity
BEGIN
  SELECT RAISE(ABORT, 'audit_identity is append-only');
END;

CREATE TRIGGER audit_identity_no_delete BEFORE DELETE ON audit_identity
BEGIN
  SELECT RAISE(ABORT, 'audit_identity is append-only');
END;

-- Checkpoints signed before this migration carry no log id ('').
ALTER TABLE audit_checkpoints ADD COLUMN log_id TEXT NOT NULL DEFAULT '';
