-- Record format v2 (docs/record-format.md): a client-chosen run identity,
-- and image, tensor and predictions records.
-- Append-only: never edit a migration that has shipped; add a new one.

ALTER TABLE runs ADD COLUMN run_key TEXT;
CREATE UNIQUE INDEX runs_by_key ON runs (project_id, run_key) WHERE run_key IS NOT NULL;

-- Step-keyed records whose bodies are large: `kind` is image, tensor or
-- predictions; `key` is the record's key (for predictions, the split);
-- `body` is the record as JSON, zstd-compressed.
CREATE TABLE step_records (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind   TEXT NOT NULL CHECK (kind IN ('image', 'tensor', 'predictions')),
    key    TEXT NOT NULL,
    step   BIGINT NOT NULL,
    bytes  BIGINT NOT NULL,                  -- size of the JSON before compression
    body   BYTEA NOT NULL,
    PRIMARY KEY (run_id, kind, key, step)
);
