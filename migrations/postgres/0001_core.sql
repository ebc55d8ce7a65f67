-- Core schema: projects, runs, scalar series in compressed chunks,
-- histograms, model and dataset summaries, idempotency keys.
-- Append-only: never edit a migration that has shipped; add a new one.

CREATE TABLE projects (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE runs (
    id           TEXT PRIMARY KEY,           -- uuid v7, text
    project_id   BIGINT NOT NULL REFERENCES projects(id),
    name         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'finished', 'failed', 'crashed')),
    config       TEXT NOT NULL DEFAULT '{}', -- JSON, as sent
    tags         TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    created_at   DOUBLE PRECISION NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION,
    end_step     BIGINT,
    data_version BIGINT NOT NULL DEFAULT 0   -- bumped by every write of run data
);
CREATE INDEX runs_by_project ON runs (project_id, created_at DESC);
CREATE INDEX runs_by_created ON runs (created_at DESC);

CREATE TABLE series (
    id         BIGSERIAL PRIMARY KEY,
    run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    count      BIGINT NOT NULL DEFAULT 0,
    first_step BIGINT,
    last_step  BIGINT,
    last_value BYTEA,                         -- f64 bits, little-endian (keeps NaN)
    UNIQUE (run_id, key)
);

-- One row per CHUNK_STEPS steps of a series; `data` is src/store/chunk.rs.
CREATE TABLE scalar_chunks (
    series_id BIGINT NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    chunk     BIGINT NOT NULL,
    n         BIGINT NOT NULL,
    min_step  BIGINT NOT NULL,
    max_step  BIGINT NOT NULL,
    min_value DOUBLE PRECISION,              -- over finite values; NULL/NaN: none
    max_value DOUBLE PRECISION,
    nonfinite BIGINT NOT NULL,
    data      BYTEA NOT NULL,
    summary   BYTEA,                          -- envelope (charts/downsample.rs) of a larger chunk
    PRIMARY KEY (series_id, chunk)
);

CREATE TABLE histograms (
    run_id    TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    step      BIGINT NOT NULL,
    edges     TEXT NOT NULL,                 -- JSON array
    counts    TEXT NOT NULL,                 -- JSON array
    nonfinite BIGINT NOT NULL,
    PRIMARY KEY (run_id, key, step)
);

CREATE TABLE models (
    run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    body   TEXT NOT NULL                     -- the `model` record, as JSON
);

CREATE TABLE datasets (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    split  TEXT NOT NULL,
    body   TEXT NOT NULL,                    -- the `dataset` record, as JSON
    PRIMARY KEY (run_id, split)
);

CREATE TABLE idempotency_keys (
    run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    accepted   BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, key)
);
