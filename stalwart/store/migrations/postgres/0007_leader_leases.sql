-- Leader leases: one row per duty group (e.g. "fleet"). The holder runs the group's duties until
-- expires_at; epoch grows with every new term so a deposed leader's late work can be recognised.
CREATE TABLE leader_leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  epoch BIGINT NOT NULL,
  acquired_at DOUBLE PRECISION NOT NULL,
  expires_at DOUBLE PRECISION NOT NULL
);
