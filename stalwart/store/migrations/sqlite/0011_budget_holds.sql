-- Budget reservations: the worst-case cost of a model call, held against every cap it is
-- charged to until the call settles. A hold past expires_at no longer counts (its holder
-- crashed); the next reservation on that key deletes it.
CREATE TABLE budget_holds (
  hold_id TEXT NOT NULL,
  key TEXT NOT NULL,
  tokens REAL NOT NULL,
  usd REAL NOT NULL,
  expires_at REAL NOT NULL,
  PRIMARY KEY (hold_id, key)
);
CREATE INDEX budget_holds_key ON budget_holds (key, expires_at);
