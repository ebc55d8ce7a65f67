//! What the MLflow tracking API (`crate::mlflow`, docs/mlflow.md) keeps
//! about experiments and models beside runs: experiment tags, and MLflow
//! 3's logged models — their name, source run, status, tags and params,
//! not their files (artifacts are not stored).
//!
//! Experiments are projects ([`super::mlflow::Experiment`]): experiment
//! `0` is the project `default`, any other id a project's id.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, FromRow};

use super::mlflow::{DEFAULT_EXPERIMENT, Experiment};
use super::{Result, Store, StoreError, now};

/// A logged model as MLflow sees it (`logged-models/*`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModel {
    /// `m-` and 32 hex digits.
    pub model_id: String,
    pub experiment_id: i64,
    pub name: String,
    pub source_run_id: Option<String>,
    pub model_type: Option<String>,
    /// `LOGGED_MODEL_PENDING`, `LOGGED_MODEL_READY` or
    /// `LOGGED_MODEL_UPLOAD_FAILED`.
    pub status: String,
    /// Unix ms.
    pub created_ms: i64,
    pub updated_ms: i64,
    pub tags: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
}

/// What `logged-models` (create) sends, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLoggedModel {
    pub experiment: Experiment,
    pub name: String,
    pub source_run_id: Option<String>,
    pub model_type: Option<String>,
    pub tags: Vec<(String, String)>,
    pub params: Vec<(String, String)>,
}

/// The status a logged model is made with.
pub const LOGGED_MODEL_PENDING: &str = "LOGGED_MODEL_PENDING";

#[derive(FromRow)]
struct TagRow {
    project_id: i64,
    project: String,
    key: String,
    value: String,
}

#[derive(FromRow)]
struct ModelRow {
    model_id: String,
    project_id: i64,
    project: String,
    name: String,
    source_run_id: Option<String>,
    model_type: Option<String>,
    status: String,
    created_ms: i64,
    updated_ms: i64,
}

#[derive(FromRow)]
struct ModelKvRow {
    model_id: String,
    kind: String,
    key: String,
    value: String,
}

const SELECT_MODELS: &str = "SELECT m.model_id, m.project_id, p.name AS project, m.name, \
     m.source_run_id, m.model_type, m.status, m.created_ms, m.updated_ms \
     FROM mlflow_logged_models m JOIN projects p ON p.id = m.project_id ";

/// The experiment id of a project: `0` for `default`.
fn experiment_id(project_id: i64, project: &str) -> i64 {
    if project == DEFAULT_EXPERIMENT {
        0
    } else {
        project_id
    }
}

/// The project id of an experiment (experiment `0` is `default`'s project).
async fn project_id(conn: &mut AnyConnection, e: &Experiment) -> Result<i64> {
    if e.id != 0 {
        return Ok(e.id);
    }
    sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
        .bind(DEFAULT_EXPERIMENT)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the project `default` vanished".into()))
}

async fn upsert(
    conn: &mut AnyConnection,
    sql: &'static str,
    owner: impl Into<OwnerId>,
    kvs: &[(String, String)],
) -> Result<()> {
    let owner = owner.into();
    for (k, v) in kvs {
        let q = sqlx::query(sql);
        let q = match &owner {
            OwnerId::Project(id) => q.bind(*id),
            OwnerId::Model(id) => q.bind(id.clone()),
        };
        q.bind(k).bind(v).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Whose tags or params a row holds.
enum OwnerId {
    Project(i64),
    Model(String),
}

impl From<i64> for OwnerId {
    fn from(id: i64) -> Self {
        OwnerId::Project(id)
    }
}

impl From<&str> for OwnerId {
    fn from(id: &str) -> Self {
        OwnerId::Model(id.to_string())
    }
}

const UPSERT_EXPERIMENT_TAG: &str = "INSERT INTO mlflow_experiment_tags (project_id, key, value) \
     VALUES ($1, $2, $3) ON CONFLICT (project_id, key) DO UPDATE SET value = excluded.value";
const UPSERT_MODEL_TAG: &str = "INSERT INTO mlflow_logged_model_kvs (model_id, kind, key, value) \
     VALUES ($1, 'tag', $2, $3) ON CONFLICT (model_id, kind, key) DO UPDATE SET value = excluded.value";
const UPSERT_MODEL_PARAM: &str = "INSERT INTO mlflow_logged_model_kvs (model_id, kind, key, value) \
     VALUES ($1, 'param', $2, $3) ON CONFLICT (model_id, kind, key) DO UPDATE SET value = excluded.value";

impl Store {
    /// Creates the project `name` with `tags` unless it exists (then
    /// nothing is written); returns it and whether it is new.
    pub async fn mlflow_create_experiment_with_tags(
        &self,
        name: &str,
        tags: &[(String, String)],
    ) -> Result<(Experiment, bool)> {
        let created = in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO projects (name, created_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(name)
            .bind(now())
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(id) = id {
                upsert(conn, UPSERT_EXPERIMENT_TAG, id, tags).await?;
            }
            Ok(id.is_some())
        })?;
        let e = self
            .mlflow_experiment_by_name(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("project {name:?} vanished")))?;
        Ok((e, created))
    }

    /// Sets (or replaces) tags of an experiment.
    pub async fn mlflow_set_experiment_tags(
        &self,
        e: &Experiment,
        tags: &[(String, String)],
    ) -> Result<()> {
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            let id = project_id(conn, e).await?;
            upsert(conn, UPSERT_EXPERIMENT_TAG, id, tags).await
        })
    }

    /// Deletes an experiment's tag; the number of tags deleted (0 or 1).
    pub async fn mlflow_delete_experiment_tag(&self, e: &Experiment, key: &str) -> Result<u64> {
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            let id = project_id(conn, e).await?;
            Ok(
                sqlx::query(
                    "DELETE FROM mlflow_experiment_tags WHERE project_id = $1 AND key = $2",
                )
                .bind(id)
                .bind(key)
                .execute(&mut *conn)
                .await?
                .rows_affected(),
            )
        })
    }

    /// The tags of every experiment that has some, by experiment id.
    pub async fn mlflow_experiment_tags(&self) -> Result<HashMap<i64, BTreeMap<String, String>>> {
        let rows: Vec<TagRow> = sqlx::query_as(
            "SELECT t.project_id, p.name AS project, t.key, t.value \
             FROM mlflow_experiment_tags t JOIN projects p ON p.id = t.project_id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out: HashMap<i64, BTreeMap<String, String>> = HashMap::new();
        for r in rows {
            out.entry(experiment_id(r.project_id, &r.project))
                .or_default()
                .insert(r.key, r.value);
        }
        Ok(out)
    }

    /// The tags of one experiment.
    pub async fn mlflow_tags_of_experiment(
        &self,
        e: &Experiment,
    ) -> Result<BTreeMap<String, String>> {
        let rows: Vec<TagRow> = sqlx::query_as(
            "SELECT t.project_id, p.name AS project, t.key, t.value \
             FROM mlflow_experiment_tags t JOIN projects p ON p.id = t.project_id \
             WHERE p.name = $1",
        )
        .bind(&e.name)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|r| (r.key, r.value)).collect())
    }

    /// Creates a logged model, `LOGGED_MODEL_PENDING`.
    pub async fn mlflow_create_logged_model(&self, new: &NewLoggedModel) -> Result<LoggedModel> {
        let model_id = format!("m-{}", uuid::Uuid::now_v7().simple());
        let ms = (now() * 1000.0).round() as i64;
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            let project = project_id(conn, &new.experiment).await?;
            sqlx::query(
                "INSERT INTO mlflow_logged_models (model_id, project_id, name, source_run_id, \
                 model_type, status, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            )
            .bind(&model_id)
            .bind(project)
            .bind(&new.name)
            .bind(new.source_run_id.clone())
            .bind(new.model_type.clone())
            .bind(LOGGED_MODEL_PENDING)
            .bind(ms)
            .execute(&mut *conn)
            .await?;
            upsert(conn, UPSERT_MODEL_TAG, model_id.as_str(), &new.tags).await?;
            upsert(conn, UPSERT_MODEL_PARAM, model_id.as_str(), &new.params).await
        })?;
        self.mlflow_logged_model(&model_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("logged model {model_id} vanished")))
    }

    /// A logged model with its tags and params.
    pub async fn mlflow_logged_model(&self, model_id: &str) -> Result<Option<LoggedModel>> {
        let row: Option<ModelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_MODELS} WHERE m.model_id = $1"
        )))
        .bind(model_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut models = self.with_kvs(vec![row], Some(model_id)).await?;
        Ok(models.pop())
    }

    /// The logged models of some experiments, newest first.
    pub async fn mlflow_logged_models_of(&self, experiments: &[i64]) -> Result<Vec<LoggedModel>> {
        let mut rows = Vec::new();
        for &e in experiments {
            let Some(exp) = self.mlflow_experiment(e).await? else {
                continue;
            };
            let mut of: Vec<ModelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT_MODELS} WHERE p.name = $1"
            )))
            .bind(&exp.name)
            .fetch_all(self.pool())
            .await?;
            rows.append(&mut of);
        }
        rows.sort_by(|a, b| (b.created_ms, &b.model_id).cmp(&(a.created_ms, &a.model_id)));
        self.with_kvs(rows, None).await
    }

    /// Models of `rows` with their tags and params (of `only` the one
    /// model, or of every model).
    async fn with_kvs(&self, rows: Vec<ModelRow>, only: Option<&str>) -> Result<Vec<LoggedModel>> {
        let mut tags: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        let mut params: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        const SELECT_KVS: &str = "SELECT model_id, kind, key, value FROM mlflow_logged_model_kvs";
        let kvs: Vec<ModelKvRow> = match only {
            Some(id) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{SELECT_KVS} WHERE model_id = $1"
                )))
                .bind(id)
                .fetch_all(self.pool())
                .await?
            }
            None => sqlx::query_as(SELECT_KVS).fetch_all(self.pool()).await?,
        };
        for r in kvs {
            let into = if r.kind == "tag" {
                &mut tags
            } else {
                &mut params
            };
            into.entry(r.model_id).or_default().insert(r.key, r.value);
        }
        Ok(rows
            .into_iter()
            .map(|r| LoggedModel {
                tags: tags.remove(&r.model_id).unwrap_or_default(),
                params: params.remove(&r.model_id).unwrap_or_default(),
                experiment_id: experiment_id(r.project_id, &r.project),
                model_id: r.model_id,
                name: r.name,
                source_run_id: r.source_run_id,
                model_type: r.model_type,
                status: r.status,
                created_ms: r.created_ms,
                updated_ms: r.updated_ms,
            })
            .collect())
    }

    /// Sets a logged model's status; whether the model exists.
    pub async fn mlflow_finalize_logged_model(&self, model_id: &str, status: &str) -> Result<bool> {
        let ms = (now() * 1000.0).round() as i64;
        let n = self
            .write_one(
                sqlx::query(
                    "UPDATE mlflow_logged_models SET status = $2, updated_ms = $3 WHERE model_id = $1",
                )
                .bind(model_id)
                .bind(status)
                .bind(ms),
            )
            .await?;
        Ok(n > 0)
    }

    /// Sets tags (`true`) or params (`false`) of a logged model; whether
    /// the model exists (nothing is written when it does not).
    pub async fn mlflow_set_logged_model_kvs(
        &self,
        model_id: &str,
        tags: bool,
        kvs: &[(String, String)],
    ) -> Result<bool> {
        let ms = (now() * 1000.0).round() as i64;
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            let n =
                sqlx::query("UPDATE mlflow_logged_models SET updated_ms = $2 WHERE model_id = $1")
                    .bind(model_id)
                    .bind(ms)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            let sql = if tags {
                UPSERT_MODEL_TAG
            } else {
                UPSERT_MODEL_PARAM
            };
            upsert(conn, sql, model_id, kvs).await?;
            Ok(true)
        })
    }

    /// Deletes a logged model's tag; the number deleted (0 or 1).
    pub async fn mlflow_delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<u64> {
        self.write_one(
            sqlx::query(
                "DELETE FROM mlflow_logged_model_kvs WHERE model_id = $1 AND kind = 'tag' AND key = $2",
            )
                .bind(model_id)
                .bind(key),
        )
        .await
    }

    /// Deletes a logged model with its tags and params; whether it existed.
    pub async fn mlflow_delete_logged_model(&self, model_id: &str) -> Result<bool> {
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            sqlx::query("DELETE FROM mlflow_logged_model_kvs WHERE model_id = $1")
                .bind(model_id)
                .execute(&mut *conn)
                .await?;
            Ok(
                sqlx::query("DELETE FROM mlflow_logged_models WHERE model_id = $1")
                    .bind(model_id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                    > 0,
            )
        })
    }
}
