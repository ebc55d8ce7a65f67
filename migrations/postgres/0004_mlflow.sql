-- The MLflow tracking API (docs/mlflow.md): what MLflow knows about a run
-- that trainlens' own tables do not hold. Experiments are projects.
-- Append-only: never edit a migration that has shipped; add a new one.

-- Runs are found by their MLflow run id, which is their run_key.
CREATE INDEX runs_by_run_key ON runs (run_key);

-- One row per run created or touched through MLflow.
CREATE TABLE mlflow_runs (
    run_id          TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    status          TEXT NOT NULL,           -- RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
    start_time      BIGINT NOT NULL,         -- unix ms
    end_time        BIGINT,
    user_id         TEXT NOT NULL DEFAULT '',
    lifecycle_stage TEXT NOT NULL DEFAULT 'active'
);

-- Params as sent (strings); also merged into runs.config.
CREATE TABLE mlflow_params (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE mlflow_tags (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- The latest value per key by (step, timestamp, value), as MLflow keeps it.
CREATE TABLE mlflow_latest_metrics (
    run_id    TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     BIGINT NOT NULL,               -- f64 bits (keeps NaN)
    timestamp BIGINT NOT NULL,
    step      BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- Points stored at a trainlens step other than their MLflow step (a second
-- value at MLflow step 0: see docs/mlflow.md). Absent: the same step.
CREATE TABLE mlflow_metric_steps (
    run_id    TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    tl_step   BIGINT NOT NULL,
    step      BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value     BIGINT NOT NULL,               -- f64 bits
    PRIMARY KEY (run_id, key, tl_step)
);
CREATE INDEX mlflow_metric_steps_by_identity ON mlflow_metric_steps (run_id, key, step, timestamp);
