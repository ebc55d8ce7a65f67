-- Live pages (src/web/live.rs): when a run last changed in a way its page or
-- the runs table shows — data, status, name, config or findings — so that a
-- replica's event stream finds a project's changed runs with one index range
-- read. Set in the same transaction as each such write.
-- Append-only: never edit a migration that has shipped; add a new one.

ALTER TABLE runs ADD COLUMN changed_at DOUBLE PRECISION NOT NULL DEFAULT 0;
UPDATE runs SET changed_at = updated_at;
CREATE INDEX runs_by_change ON runs (changed_at);
