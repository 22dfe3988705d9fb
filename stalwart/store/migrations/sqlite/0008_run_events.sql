-- A run's durable event stream: events the workflow emitted (ctx.emit) and the text of streamed
-- model calls (ctx.llm(stream=True)), one row per batch. ofs is the event's offset in its run's
-- stream (1, 2, 3... with no gap), assigned when the row is written; key names the event's place
-- in the workflow (its step and position there), so a step re-executed after a crash never writes
-- an event twice.
CREATE TABLE run_events (
  run_id TEXT NOT NULL,
  ofs INTEGER NOT NULL,
  key TEXT NOT NULL,
  kind TEXT NOT NULL,
  data TEXT NOT NULL,
  created_at REAL NOT NULL,
  PRIMARY KEY (run_id, ofs),
  UNIQUE (run_id, key)
);
