-- The runs page (src/web/mod.rs, Store::run_table): sort by a series' last
-- value in SQL, and find a project's runs by status.
-- Append-only: never edit a migration that has shipped; add a new one.

-- The last value as a number (`last_value` keeps the exact bits, NaN
-- included); NULL when it is not finite or was written before this column.
ALTER TABLE series ADD COLUMN last_real DOUBLE PRECISION;

CREATE INDEX runs_by_project_status ON runs (project_id, status, created_at DESC);
-- A run's open findings by severity (its health), without scanning every
-- open finding of the database.
CREATE INDEX findings_by_run ON findings (run_id, status, severity_rank);
