-- The MLflow tracking API (docs/mlflow.md): experiment tags, and MLflow 3's
-- logged models (their metadata: the model files are artifacts, which
-- trainlens does not store). Experiments are projects.
-- Append-only: never edit a migration that has shipped; add a new one.

CREATE TABLE mlflow_experiment_tags (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (project_id, key)
);

CREATE TABLE mlflow_logged_models (
    model_id      TEXT PRIMARY KEY,          -- 'm-' and 32 hex digits
    project_id    BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    source_run_id TEXT,                      -- the MLflow run id as sent
    model_type    TEXT,
    status        TEXT NOT NULL,             -- LOGGED_MODEL_PENDING, _READY, _UPLOAD_FAILED
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);
CREATE INDEX mlflow_logged_models_by_project ON mlflow_logged_models (project_id, created_ms);

-- A logged model's tags and params: `kind` says which.
CREATE TABLE mlflow_logged_model_kvs (
    model_id TEXT NOT NULL REFERENCES mlflow_logged_models(model_id) ON DELETE CASCADE,
    kind     TEXT NOT NULL CHECK (kind IN ('tag', 'param')),
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, kind, key)
);
