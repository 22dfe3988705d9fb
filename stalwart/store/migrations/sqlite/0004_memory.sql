-- Agent memory (episodic and semantic tiers) and the artifact index. Memory text is stored only
-- after the guard redacted it; embeddings are little-endian float32 blobs, searched with sqlite-vec
-- when the interpreter can load it, else exactly by Stalwart. Every item expires.
CREATE TABLE memory_items (
  id TEXT PRIMARY KEY,
  org TEXT NOT NULL,
  user_id TEXT NOT NULL,
  tier TEXT NOT NULL,
  kind TEXT NOT NULL,
  text TEXT NOT NULL,
  run_id TEXT,
  content_hash TEXT NOT NULL,
  embedder TEXT NOT NULL,
  dims INTEGER NOT NULL,
  embedding BLOB NOT NULL,
  created_at REAL NOT NULL,
  expires_at REAL NOT NULL
);
CREATE UNIQUE INDEX memory_items_dedup ON memory_items (org, user_id, tier, content_hash);
CREATE INDEX memory_items_owner ON memory_items (org, user_id, embedder, expires_at);
CREATE INDEX memory_items_expiry ON memory_items (expires_at);
CREATE INDEX memory_items_run ON memory_items (run_id);

-- Artifacts live in a directory or an S3 bucket, encrypted; rows hold only hashes and sizes.
CREATE TABLE artifacts (
  org TEXT NOT NULL,
  key_id TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  media_type TEXT NOT NULL,
  run_id TEXT,
  created_at REAL NOT NULL,
  expires_at REAL,
  PRIMARY KEY (org, key_id, sha256)
);
CREATE INDEX artifacts_run ON artifacts (run_id);
CREATE INDEX artifacts_expiry ON artifacts (expires_at);
