-- MCP tool definitions pinned by an operator: the SHA-256 of each tool's name, description and
-- input schema as approved, with the definition itself (what the pin stands for, for `mcp list`).
-- A listed definition whose hash differs, or a tool with no row, is quarantined until approved.
CREATE TABLE mcp_pins (
  server TEXT NOT NULL,
  tool TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  definition TEXT NOT NULL,
  approved_by TEXT NOT NULL,
  approved_at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (server, tool)
);
