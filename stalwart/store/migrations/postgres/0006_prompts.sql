-- Prompt templates changed at run time: every approved version, and the proposals that lead to
-- them. The version in force for NAME@VERSION is named by the flag prompt_active:NAME@VERSION.
CREATE TABLE prompt_versions (
  ref TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  source TEXT NOT NULL,
  proposed_by TEXT,
  approved_by TEXT,
  created_at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (ref, content_hash)
);

CREATE TABLE prompt_changes (
  id TEXT PRIMARY KEY,
  ref TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  source TEXT NOT NULL,
  proposer TEXT NOT NULL,
  status TEXT NOT NULL,
  approver TEXT,
  created_at DOUBLE PRECISION NOT NULL,
  decided_at DOUBLE PRECISION
);
CREATE INDEX prompt_changes_status ON prompt_changes (status, created_at);
