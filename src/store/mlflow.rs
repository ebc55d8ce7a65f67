//! What the MLflow tracking API (`crate::mlflow`, docs/mlflow.md) keeps
//! beside trainlens' own tables: a run's MLflow status, times and lifecycle,
//! its params (as sent, and merged into the run's config), its tags, the
//! latest value per metric, and the MLflow step and timestamp of points
//! stored at another trainlens step ([`place_metric`]).
//!
//! Experiments are projects: experiment `"0"` is the project `default`, any
//! other experiment id is a project's id.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, FromRow};
use uuid::Uuid;

use super::records::write_batch;
use super::runs::insert_run;
use super::{Result, Store, StoreError, chunk, now, parse_uuid};
use crate::model::{Batch, NewRun, Point, RunStatus};

/// A project seen as an MLflow experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// `0` for the project `default`, the project's id otherwise.
    pub id: i64,
    pub name: String,
    /// Unix ms.
    pub created_ms: i64,
}

/// The name of the project experiment `"0"` stands for.
pub const DEFAULT_EXPERIMENT: &str = "default";

#[derive(FromRow)]
struct ProjectRow {
    id: i64,
    name: String,
    created_at: f64,
}

impl From<ProjectRow> for Experiment {
    fn from(r: ProjectRow) -> Self {
        Experiment {
            id: if r.name == DEFAULT_EXPERIMENT {
                0
            } else {
                r.id
            },
            name: r.name,
            created_ms: (r.created_at * 1000.0) as i64,
        }
    }
}

/// One metric point as MLflow sees it.
#[derive(Debug, Clone, Copy)]
pub struct MlMetric {
    pub value: f64,
    /// Unix ms.
    pub timestamp: i64,
    pub step: i64,
}

impl PartialEq for MlMetric {
    /// Bitwise on the value, so that NaN equals NaN.
    fn eq(&self, o: &Self) -> bool {
        self.value.to_bits() == o.value.to_bits()
            && self.timestamp == o.timestamp
            && self.step == o.step
    }
}

impl MlMetric {
    /// MLflow's order of a series: timestamp, step, value.
    pub fn history_order(&self, o: &Self) -> std::cmp::Ordering {
        (self.timestamp, self.step)
            .cmp(&(o.timestamp, o.step))
            .then(self.value.total_cmp(&o.value))
    }

    /// Whether `self` is later than `o` as MLflow's latest metric:
    /// by step, then timestamp, then value.
    fn later_than(&self, o: &Self) -> bool {
        (self.step, self.timestamp)
            .cmp(&(o.step, o.timestamp))
            .then(self.value.total_cmp(&o.value))
            .is_gt()
    }
}

/// A metric to log: key and point.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    pub key: String,
    pub metric: MlMetric,
}

/// What one log request writes (`log-metric`, `log-parameter`, `set-tag`,
/// `log-batch`), validated by the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MlBatch {
    pub metrics: Vec<NewMetric>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

/// A run as MLflow sees it (without data).
#[derive(Debug, Clone, PartialEq)]
pub struct MlRun {
    pub id: Uuid,
    /// The MLflow run id: the run's `run_key`, or its id as 32 hex digits.
    pub mlflow_id: String,
    pub experiment_id: i64,
    pub name: String,
    /// trainlens' status; [`MlRun::mlflow_status`] is MLflow's word for it.
    pub status: RunStatus,
    /// The MLflow status last set, when set through MLflow.
    pub mlflow_status: Option<String>,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub user_id: String,
    pub lifecycle_stage: String,
}

impl MlRun {
    /// The MLflow status: the one last set through MLflow while it still
    /// agrees with trainlens' status (KILLED and SCHEDULED survive), else
    /// trainlens' status in MLflow's words (`crashed` is FAILED).
    pub fn mlflow_status(&self) -> &str {
        match &self.mlflow_status {
            Some(s) if status_from_mlflow(s) == Some(self.status) => s,
            _ => match self.status {
                RunStatus::Running => "RUNNING",
                RunStatus::Finished => "FINISHED",
                RunStatus::Failed | RunStatus::Crashed => "FAILED",
            },
        }
    }
}

/// trainlens' status for an MLflow status word; `None` for an unknown word.
pub fn status_from_mlflow(s: &str) -> Option<RunStatus> {
    Some(match s {
        "RUNNING" | "SCHEDULED" => RunStatus::Running,
        "FINISHED" => RunStatus::Finished,
        "FAILED" | "KILLED" => RunStatus::Failed,
        _ => return None,
    })
}

/// A run's MLflow data: params, tags and the latest value per metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MlData {
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, MlMetric>,
}

/// What a run's new MLflow state is (`runs/update`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MlRunUpdate {
    pub status: Option<String>,
    pub end_time: Option<i64>,
    pub name: Option<String>,
}

/// What `runs/create` sends.
#[derive(Debug, Clone, PartialEq)]
pub struct MlNewRun {
    pub experiment: Experiment,
    pub name: String,
    pub start_time: i64,
    pub user_id: String,
    pub tags: Vec<(String, String)>,
}

/// Where a metric goes in trainlens' series (see [`place_metric`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// At this trainlens step, replacing what is there (the same point
    /// again, or a new value for an explicit step).
    At(u64),
    /// At this new trainlens step past the series' last; the MLflow step
    /// and timestamp are kept beside it.
    Append(u64),
}

/// Where a metric logged at MLflow step `step` goes, given what the series
/// holds at trainlens step `step` (`at_step`: that point's MLflow identity),
/// where an identical point already is (`same`), and the series' last
/// trainlens step.
///
/// trainlens keeps one point per (key, step) and a repeated step replaces
/// it; MLflow keeps every (key, step, timestamp, value). Clients that log
/// without a step send step 0 every time, so a point at MLflow step 0 that
/// differs from the one stored at trainlens step 0 is appended at the next
/// trainlens step instead of replacing it. A repeated explicit step
/// (> 0) replaces, as in trainlens' own API — shifting it would misplace
/// every later step.
pub fn place_metric(
    m: &MlMetric,
    at_step: Option<&MlMetric>,
    same: Option<u64>,
    last: Option<u64>,
) -> Placement {
    let step = m.step as u64;
    match at_step {
        None => Placement::At(step),
        Some(p) if p == m => Placement::At(step),
        Some(p) if p.step == m.step && m.step > 0 => Placement::At(step),
        Some(_) => match same {
            Some(tl) => Placement::At(tl),
            None => Placement::Append(last.map_or(0, |l| l + 1).max(step)),
        },
    }
}

#[derive(FromRow)]
struct MlRunRow {
    id: String,
    run_key: Option<String>,
    project_id: i64,
    project: String,
    name: String,
    status: String,
    created_at: f64,
    ml_status: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    user_id: Option<String>,
    lifecycle_stage: Option<String>,
}

const SELECT_ML_RUNS: &str = "SELECT r.id, r.run_key, r.project_id, p.name AS project, r.name, r.status, \
     r.created_at, m.status AS ml_status, m.start_time, m.end_time, m.user_id, m.lifecycle_stage \
     FROM runs r JOIN projects p ON p.id = r.project_id LEFT JOIN mlflow_runs m ON m.run_id = r.id ";

try_from_row!(MlRunRow => MlRun, |r| {
    let id = parse_uuid(&r.id)?;
    Ok(MlRun {
        id,
        mlflow_id: r.run_key.unwrap_or_else(|| id.simple().to_string()),
        experiment_id: if r.project == DEFAULT_EXPERIMENT {
            0
        } else {
            r.project_id
        },
        name: r.name,
        status: super::parse_word(&r.status)?,
        mlflow_status: r.ml_status,
        start_time: r
            .start_time
            .unwrap_or((r.created_at * 1000.0).round() as i64),
        end_time: r.end_time,
        user_id: r.user_id.unwrap_or_default(),
        lifecycle_stage: r.lifecycle_stage.unwrap_or_else(|| "active".into()),
    })
});

#[derive(FromRow)]
struct KvRow {
    run_id: String,
    key: String,
    value: String,
}

#[derive(FromRow)]
struct LatestRow {
    run_id: String,
    key: String,
    value: i64,
    timestamp: i64,
    step: i64,
}

#[derive(FromRow)]
struct StepRow {
    tl_step: i64,
    step: i64,
    timestamp: i64,
    value: i64,
}

fn bits(v: f64) -> i64 {
    v.to_bits() as i64
}

fn from_bits(b: i64) -> f64 {
    f64::from_bits(b as u64)
}

/// The MLflow identity of a stored trainlens point with no step mapping.
fn as_mlflow(p: &Point) -> MlMetric {
    MlMetric {
        value: p.value,
        timestamp: p.time.map_or(0, |t| (t * 1000.0).round() as i64),
        step: p.step as i64,
    }
}

impl Store {
    /// Every project, as experiments, by name.
    pub async fn mlflow_experiments(&self) -> Result<Vec<Experiment>> {
        let rows: Vec<ProjectRow> =
            sqlx::query_as("SELECT id, name, created_at FROM projects ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(Experiment::from).collect())
    }

    pub async fn mlflow_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        let row: Option<ProjectRow> =
            sqlx::query_as("SELECT id, name, created_at FROM projects WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(Experiment::from))
    }

    /// The experiment of an id; `0` is the project `default`, made on
    /// first use.
    pub async fn mlflow_experiment(&self, id: i64) -> Result<Option<Experiment>> {
        if id == 0 {
            if let Some(e) = self.mlflow_experiment_by_name(DEFAULT_EXPERIMENT).await? {
                return Ok(Some(e));
            }
            return self
                .mlflow_create_experiment(DEFAULT_EXPERIMENT)
                .await
                .map(|(e, _)| Some(e));
        }
        let row: Option<ProjectRow> =
            sqlx::query_as("SELECT id, name, created_at FROM projects WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(Experiment::from))
    }

    /// Creates the project `name` unless it exists; returns it and whether
    /// it is new.
    pub async fn mlflow_create_experiment(&self, name: &str) -> Result<(Experiment, bool)> {
        let created = self
            .write_one(
                sqlx::query(
                    "INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(now()),
            )
            .await?;
        let e = self
            .mlflow_experiment_by_name(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("project {name:?} vanished")))?;
        Ok((e, created > 0))
    }

    /// Creates a run through MLflow: its `run_key` (and MLflow id) is its
    /// id as 32 hex digits.
    pub async fn mlflow_create_run(&self, new: &MlNewRun) -> Result<MlRun> {
        let id = in_write!(self, |tx| {
            let (id, _) = insert_run(
                tx,
                &NewRun {
                    project: new.experiment.name.clone(),
                    name: new.name.clone(),
                    config: serde_json::json!({}),
                    tags: Vec::new(),
                    run_key: None,
                },
            )
            .await?;
            let conn: &mut AnyConnection = tx;
            sqlx::query("UPDATE runs SET run_key = $2 WHERE id = $1")
                .bind(id.to_string())
                .bind(id.simple().to_string())
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO mlflow_runs (run_id, status, start_time, user_id) VALUES ($1, 'RUNNING', $2, $3)",
            )
            .bind(id.to_string())
            .bind(new.start_time)
            .bind(&new.user_id)
            .execute(&mut *conn)
            .await?;
            write_tags(conn, &id.to_string(), &new.tags).await?;
            Ok(id)
        })?;
        self.mlflow_run_by_id(id)
            .await?
            .ok_or(StoreError::RunNotFound)
    }

    /// The first run of [`SELECT_ML_RUNS`] then `rest` (its `WHERE …`, with
    /// `$1` bound to `value`).
    async fn mlflow_run_where(&self, rest: &str, value: &str) -> Result<Option<MlRun>> {
        let row: Option<MlRunRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_ML_RUNS} {rest}")))
                .bind(value)
                .fetch_optional(self.pool())
                .await?;
        row.map(MlRun::try_from).transpose()
    }

    async fn mlflow_run_by_id(&self, id: Uuid) -> Result<Option<MlRun>> {
        self.mlflow_run_where("WHERE r.id = $1", &id.to_string())
            .await
    }

    /// The run of an MLflow run id: its `run_key` first, then its id.
    pub async fn mlflow_run(&self, mlflow_id: &str) -> Result<Option<MlRun>> {
        let by_key = "WHERE r.run_key = $1 ORDER BY r.created_at LIMIT 1";
        if let Some(run) = self.mlflow_run_where(by_key, mlflow_id).await? {
            return Ok(Some(run));
        }
        match Uuid::parse_str(mlflow_id) {
            Ok(id) => self.mlflow_run_by_id(id).await,
            Err(_) => Ok(None),
        }
    }

    /// The runs of some experiments, with their data, oldest first.
    pub async fn mlflow_runs_of(&self, experiments: &[i64]) -> Result<Vec<(MlRun, MlData)>> {
        let mut out = Vec::new();
        for &e in experiments {
            let Some(exp) = self.mlflow_experiment(e).await? else {
                continue;
            };
            let project: i64 = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
                .bind(&exp.name)
                .fetch_one(self.pool())
                .await?;
            let rows: Vec<MlRunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT_ML_RUNS} WHERE r.project_id = $1 ORDER BY r.created_at, r.id"
            )))
            .bind(project)
            .fetch_all(self.pool())
            .await?;
            let mut data: HashMap<String, MlData> = HashMap::new();
            for (table, is_param) in [("mlflow_params", true), ("mlflow_tags", false)] {
                let kv: Vec<KvRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT t.run_id, t.key, t.value FROM {table} t JOIN runs r ON r.id = t.run_id \
                     WHERE r.project_id = $1"
                )))
                .bind(project)
                .fetch_all(self.pool())
                .await?;
                for r in kv {
                    let d = data.entry(r.run_id).or_default();
                    let map = if is_param { &mut d.params } else { &mut d.tags };
                    map.insert(r.key, r.value);
                }
            }
            let latest: Vec<LatestRow> = sqlx::query_as(
                "SELECT t.run_id, t.key, t.value, t.timestamp, t.step FROM mlflow_latest_metrics t \
                 JOIN runs r ON r.id = t.run_id WHERE r.project_id = $1",
            )
            .bind(project)
            .fetch_all(self.pool())
            .await?;
            for r in latest {
                data.entry(r.run_id).or_default().metrics.insert(
                    r.key,
                    MlMetric {
                        value: from_bits(r.value),
                        timestamp: r.timestamp,
                        step: r.step,
                    },
                );
            }
            for row in rows {
                let d = data.remove(&row.id).unwrap_or_default();
                out.push((MlRun::try_from(row)?, d));
            }
        }
        Ok(out)
    }

    /// A run's params, tags and latest metrics; series logged through
    /// trainlens' own API show their last point.
    pub async fn mlflow_data(&self, run: Uuid) -> Result<MlData> {
        let mut d = MlData::default();
        for (table, is_param) in [("mlflow_params", true), ("mlflow_tags", false)] {
            let kv: Vec<KvRow> = self
                .run_rows(
                    sqlx::AssertSqlSafe(format!(
                        "SELECT run_id, key, value FROM {table} WHERE run_id = $1"
                    )),
                    run,
                )
                .await?;
            for r in kv {
                let map = if is_param { &mut d.params } else { &mut d.tags };
                map.insert(r.key, r.value);
            }
        }
        const SQL: &str = "SELECT run_id, key, value, timestamp, step FROM mlflow_latest_metrics WHERE run_id = $1";
        let latest: Vec<LatestRow> = self.run_rows(SQL, run).await?;
        for r in latest {
            d.metrics.insert(
                r.key,
                MlMetric {
                    value: from_bits(r.value),
                    timestamp: r.timestamp,
                    step: r.step,
                },
            );
        }
        for s in self.series(run).await? {
            if let (false, Some(step), Some(v)) =
                (d.metrics.contains_key(&s.key), s.last_step, s.last_value)
            {
                d.metrics.insert(
                    s.key,
                    MlMetric {
                        value: v.0,
                        timestamp: 0,
                        step: step as i64,
                    },
                );
            }
        }
        Ok(d)
    }

    /// Sets a run's MLflow status, end time and name; the status also sets
    /// trainlens' (FINISHED → finished, FAILED and KILLED → failed,
    /// RUNNING and SCHEDULED → running).
    pub async fn mlflow_update_run(&self, run: &MlRun, u: &MlRunUpdate) -> Result<()> {
        let status = u
            .status
            .as_deref()
            .and_then(status_from_mlflow)
            .map(|s| s.as_str().to_string());
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            ensure_mlflow_row(conn, run).await?;
            sqlx::query(
                "UPDATE mlflow_runs SET status = COALESCE(CAST($2 AS TEXT), status), \
                 end_time = COALESCE($3, end_time) WHERE run_id = $1",
            )
            .bind(run.id.to_string())
            .bind(u.status.clone())
            .bind(u.end_time)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE runs SET status = COALESCE(CAST($2 AS TEXT), status), \
                 name = COALESCE(CAST($3 AS TEXT), name), updated_at = $4, changed_at = $4, \
                 data_version = data_version + 1 WHERE id = $1",
            )
            .bind(run.id.to_string())
            .bind(status)
            .bind(u.name.clone())
            .bind(now())
            .execute(&mut *conn)
            .await?;
            if let Some(name) = &u.name {
                write_tags(
                    conn,
                    &run.id.to_string(),
                    &[("mlflow.runName".into(), name.clone())],
                )
                .await?;
            }
            Ok(())
        })
    }

    /// Sets a run's lifecycle stage (`active`, `deleted`).
    pub async fn mlflow_set_lifecycle(&self, run: &MlRun, stage: &str) -> Result<()> {
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            ensure_mlflow_row(conn, run).await?;
            sqlx::query("UPDATE mlflow_runs SET lifecycle_stage = $2 WHERE run_id = $1")
                .bind(run.id.to_string())
                .bind(stage)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }

    pub async fn mlflow_delete_tag(&self, run: Uuid, key: &str) -> Result<u64> {
        self.write_one(
            sqlx::query("DELETE FROM mlflow_tags WHERE run_id = $1 AND key = $2")
                .bind(run.to_string())
                .bind(key),
        )
        .await
    }

    /// Writes metrics, params and tags into a run, all or nothing. Params
    /// already logged are left as they are (the caller refuses a changed
    /// value); numbers among them go into the run's config as numbers.
    pub async fn mlflow_log(&self, run: Uuid, b: &MlBatch) -> Result<()> {
        in_write!(self, |tx| log_in(
            tx,
            &run.to_string(),
            b,
            self.max_keys_per_run
        )
        .await)?;
        self.count_points(b.metrics.len() as u64);
        Ok(())
    }

    /// A series as MLflow sees it, in MLflow's order (timestamp, step,
    /// value); `None` when the run has no such series.
    pub async fn mlflow_history(&self, run: Uuid, key: &str) -> Result<Option<Vec<MlMetric>>> {
        let Some(points) = self.points(run, key, None, None).await? else {
            return Ok(None);
        };
        let rows: Vec<StepRow> = sqlx::query_as(
            "SELECT tl_step, step, timestamp, value FROM mlflow_metric_steps WHERE run_id = $1 AND key = $2",
        )
        .bind(run.to_string())
        .bind(key)
        .fetch_all(self.pool())
        .await?;
        let mapped: HashMap<u64, (i64, i64)> = rows
            .into_iter()
            .map(|r| (r.tl_step as u64, (r.step, r.timestamp)))
            .collect();
        let mut out: Vec<MlMetric> = points
            .iter()
            .map(|p| match mapped.get(&p.step) {
                Some(&(step, timestamp)) => MlMetric {
                    value: p.value,
                    timestamp,
                    step,
                },
                None => as_mlflow(p),
            })
            .collect();
        out.sort_by(MlMetric::history_order);
        Ok(Some(out))
    }

    /// The params of a run as sent.
    pub async fn mlflow_params(&self, run: Uuid) -> Result<BTreeMap<String, String>> {
        const SQL: &str = "SELECT run_id, key, value FROM mlflow_params WHERE run_id = $1";
        let kv: Vec<KvRow> = self.run_rows(SQL, run).await?;
        Ok(kv.into_iter().map(|r| (r.key, r.value)).collect())
    }
}

/// Gives a run made through trainlens' own API its `mlflow_runs` row.
async fn ensure_mlflow_row(conn: &mut AnyConnection, run: &MlRun) -> Result<()> {
    sqlx::query(
        "INSERT INTO mlflow_runs (run_id, status, start_time) VALUES ($1, $2, $3) \
         ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(run.id.to_string())
    .bind(run.mlflow_status().to_string())
    .bind(run.start_time)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_tags(conn: &mut AnyConnection, run: &str, tags: &[(String, String)]) -> Result<()> {
    for (k, v) in tags {
        sqlx::query(
            "INSERT INTO mlflow_tags (run_id, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(run)
        .bind(k)
        .bind(v)
        .execute(&mut *conn)
        .await?;
        if k == "mlflow.runName" {
            sqlx::query("UPDATE runs SET name = $2, changed_at = $3 WHERE id = $1")
                .bind(run)
                .bind(v)
                .bind(now())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// The points of one series the placement of a batch looks at: decoded
/// chunks and step mappings, read once per batch.
struct SeriesView {
    id: Option<i64>,
    last: Option<u64>,
    chunks: HashMap<i64, Vec<Point>>,
    /// trainlens step → MLflow identity, for steps mapped (stored or placed
    /// in this batch).
    mapped: HashMap<u64, MlMetric>,
    /// Points placed by this batch, by trainlens step.
    placed: HashMap<u64, MlMetric>,
}

impl SeriesView {
    async fn load(conn: &mut AnyConnection, run: &str, key: &str) -> Result<SeriesView> {
        // As `write_series` does (it runs next, in this transaction, with
        // points): the upsert locks the series row on PostgreSQL, so two
        // writers of one series place their points one after the other.
        let (id, last): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO series (run_id, key) VALUES ($1, $2) \
             ON CONFLICT (run_id, key) DO UPDATE SET key = excluded.key \
             RETURNING id, last_step",
        )
        .bind(run)
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
        Ok(SeriesView {
            id: Some(id),
            last: last.map(|s| s as u64),
            chunks: HashMap::new(),
            mapped: HashMap::new(),
            placed: HashMap::new(),
        })
    }

    /// The MLflow identity of the point at trainlens step `tl`, if any.
    async fn at(
        &mut self,
        conn: &mut AnyConnection,
        run: &str,
        key: &str,
        tl: u64,
    ) -> Result<Option<MlMetric>> {
        if let Some(m) = self.placed.get(&tl) {
            return Ok(Some(*m));
        }
        let (Some(id), Some(last)) = (self.id, self.last) else {
            return Ok(None);
        };
        if tl > last {
            return Ok(None);
        }
        let c = chunk::chunk_of(tl);
        if let std::collections::hash_map::Entry::Vacant(e) = self.chunks.entry(c) {
            let data: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT data FROM scalar_chunks WHERE series_id = $1 AND chunk = $2",
            )
            .bind(id)
            .bind(c)
            .fetch_optional(&mut *conn)
            .await?;
            e.insert(match data {
                Some(d) => chunk::decode(&d)?,
                None => Vec::new(),
            });
        }
        let Some(p) = self.chunks[&c].iter().find(|p| p.step == tl).copied() else {
            return Ok(None);
        };
        if let Some(m) = self.mapped.get(&tl) {
            return Ok(Some(MlMetric {
                value: p.value,
                ..*m
            }));
        }
        let row: Option<StepRow> = sqlx::query_as(
            "SELECT tl_step, step, timestamp, value FROM mlflow_metric_steps \
             WHERE run_id = $1 AND key = $2 AND tl_step = $3",
        )
        .bind(run)
        .bind(key)
        .bind(tl as i64)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(Some(match row {
            Some(r) => MlMetric {
                value: from_bits(r.value),
                timestamp: r.timestamp,
                step: r.step,
            },
            None => as_mlflow(&p),
        }))
    }

    /// Where an identical point is stored, if anywhere.
    async fn same(
        &self,
        conn: &mut AnyConnection,
        run: &str,
        key: &str,
        m: &MlMetric,
    ) -> Result<Option<u64>> {
        if let Some((tl, _)) = self.placed.iter().find(|(_, p)| *p == m) {
            return Ok(Some(*tl));
        }
        let rows: Vec<StepRow> = sqlx::query_as(
            "SELECT tl_step, step, timestamp, value FROM mlflow_metric_steps \
             WHERE run_id = $1 AND key = $2 AND step = $3 AND timestamp = $4",
        )
        .bind(run)
        .bind(key)
        .bind(m.step)
        .bind(m.timestamp)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .iter()
            .find(|r| r.value == bits(m.value))
            .map(|r| r.tl_step as u64))
    }
}

async fn log_in(tx: &mut AnyConnection, run: &str, b: &MlBatch, max_keys: usize) -> Result<()> {
    let mut by_key: BTreeMap<&str, Vec<&MlMetric>> = BTreeMap::new();
    for m in &b.metrics {
        by_key.entry(&m.key).or_default().push(&m.metric);
    }
    let mut batch = Batch::default();
    let mut mappings: Vec<(&str, u64, MlMetric)> = Vec::new();
    for (key, metrics) in &by_key {
        let mut view = SeriesView::load(tx, run, key).await?;
        let mut points = Vec::with_capacity(metrics.len());
        for m in metrics {
            let step = m.step as u64;
            let at = view.at(tx, run, key, step).await?;
            let needs_same = matches!(&at, Some(p) if p != *m && !(p.step == m.step && m.step > 0));
            let same = if needs_same {
                view.same(tx, run, key, m).await?
            } else {
                None
            };
            let tl = match place_metric(m, at.as_ref(), same, view.last) {
                Placement::At(tl) => tl,
                Placement::Append(tl) => {
                    view.mapped.insert(tl, **m);
                    mappings.push((key, tl, **m));
                    tl
                }
            };
            view.placed.insert(tl, **m);
            view.last = Some(view.last.map_or(tl, |l| l.max(tl)));
            points.push(Point {
                step: tl,
                value: m.value,
                time: Some(m.timestamp as f64 / 1000.0),
            });
        }
        batch.scalars.insert((*key).to_string(), points);
    }
    write_batch(tx, run, &batch, max_keys).await?;
    for (key, tl, m) in &mappings {
        sqlx::query(
            "INSERT INTO mlflow_metric_steps (run_id, key, tl_step, step, timestamp, value) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, key, tl_step) DO UPDATE SET \
             step = excluded.step, timestamp = excluded.timestamp, value = excluded.value",
        )
        .bind(run)
        .bind(*key)
        .bind(*tl as i64)
        .bind(m.step)
        .bind(m.timestamp)
        .bind(bits(m.value))
        .execute(&mut *tx)
        .await?;
    }
    for (key, metrics) in &by_key {
        let newest = metrics
            .iter()
            .copied()
            .reduce(|a, b| if b.later_than(a) || b == a { b } else { a })
            .expect("a key has metrics");
        let old: Option<LatestRow> = sqlx::query_as(
            "SELECT run_id, key, value, timestamp, step FROM mlflow_latest_metrics \
             WHERE run_id = $1 AND key = $2",
        )
        .bind(run)
        .bind(*key)
        .fetch_optional(&mut *tx)
        .await?;
        let old = old.map(|r| MlMetric {
            value: from_bits(r.value),
            timestamp: r.timestamp,
            step: r.step,
        });
        if old.is_none_or(|o| !o.later_than(newest)) {
            sqlx::query(
                "INSERT INTO mlflow_latest_metrics (run_id, key, value, timestamp, step) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, key) DO UPDATE SET \
                 value = excluded.value, timestamp = excluded.timestamp, step = excluded.step",
            )
            .bind(run)
            .bind(*key)
            .bind(bits(newest.value))
            .bind(newest.timestamp)
            .bind(newest.step)
            .execute(&mut *tx)
            .await?;
        }
    }
    if !b.params.is_empty() {
        for (k, v) in &b.params {
            sqlx::query(
                "INSERT INTO mlflow_params (run_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (run_id, key) DO NOTHING",
            )
            .bind(run)
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        }
        let config: String = sqlx::query_scalar("SELECT config FROM runs WHERE id = $1")
            .bind(run)
            .fetch_one(&mut *tx)
            .await?;
        let mut config: serde_json::Value = super::from_json("run config", &config)?;
        if let Some(obj) = config.as_object_mut() {
            for (k, v) in &b.params {
                obj.entry(k.clone()).or_insert_with(|| param_json(v));
            }
        }
        sqlx::query("UPDATE runs SET config = $2 WHERE id = $1")
            .bind(run)
            .bind(config.to_string())
            .execute(&mut *tx)
            .await?;
    }
    write_tags(tx, run, &b.tags).await?;
    if b.metrics.is_empty() {
        // write_batch did not run: the run still changed.
        sqlx::query(
            "UPDATE runs SET updated_at = $2, changed_at = $2, data_version = data_version + 1 WHERE id = $1",
        )
        .bind(run)
        .bind(now())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A param's value in the run's config: a JSON number when the text is a
/// finite number (so the detectors read `lr` as 0.1), a boolean for
/// `True`/`False`/`true`/`false`, null for Python's `None` (autologging
/// logs every unset argument as `"None"`), the text otherwise.
pub fn param_json(v: &str) -> serde_json::Value {
    if let Ok(n) = v.trim().parse::<f64>()
        && n.is_finite()
        && let Some(num) = serde_json::Number::from_f64(n)
    {
        return if let Ok(i) = v.trim().parse::<i64>() {
            serde_json::Value::from(i)
        } else {
            serde_json::Value::Number(num)
        };
    }
    match v {
        "True" | "true" => serde_json::Value::Bool(true),
        "False" | "false" => serde_json::Value::Bool(false),
        "None" => serde_json::Value::Null,
        _ => serde_json::Value::String(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(step: i64, timestamp: i64, value: f64) -> MlMetric {
        MlMetric {
            value,
            timestamp,
            step,
        }
    }

    #[test]
    fn a_new_step_goes_to_its_own_step() {
        assert_eq!(
            place_metric(&m(5, 1, 0.5), None, None, Some(4)),
            Placement::At(5)
        );
        assert_eq!(
            place_metric(&m(0, 1, 0.5), None, None, None),
            Placement::At(0)
        );
    }

    #[test]
    fn the_same_point_again_replaces_itself() {
        let p = m(0, 1000, 0.5);
        assert_eq!(place_metric(&p, Some(&p), None, Some(9)), Placement::At(0));
        let nan = m(0, 1000, f64::NAN);
        assert_eq!(
            place_metric(&nan, Some(&nan), None, Some(9)),
            Placement::At(0)
        );
        // A retried stepless value found at the step it was appended to.
        assert_eq!(
            place_metric(&m(0, 2000, 0.4), Some(&p), Some(7), Some(9)),
            Placement::At(7)
        );
    }

    #[test]
    fn stepless_values_are_appended_in_arrival_order() {
        let first = m(0, 1000, 0.5);
        assert_eq!(
            place_metric(&m(0, 1001, 0.4), Some(&first), None, Some(0)),
            Placement::Append(1)
        );
        // Same millisecond, another value: MLflow keeps both, so do we.
        assert_eq!(
            place_metric(&m(0, 1000, 0.3), Some(&first), None, Some(1)),
            Placement::Append(2)
        );
    }

    #[test]
    fn a_repeated_explicit_step_replaces_and_an_occupied_one_appends() {
        let old = m(3, 1000, 0.5);
        assert_eq!(
            place_metric(&m(3, 2000, 0.1), Some(&old), None, Some(3)),
            Placement::At(3)
        );
        // trainlens step 4 holds a stepless value appended there.
        let appended = m(0, 1500, 0.2);
        assert_eq!(
            place_metric(&m(4, 2000, 0.1), Some(&appended), None, Some(4)),
            Placement::Append(5)
        );
    }

    #[test]
    fn latest_is_by_step_then_timestamp_then_value() {
        assert!(m(2, 0, 0.0).later_than(&m(1, 9, 9.0)));
        assert!(m(1, 2, 0.0).later_than(&m(1, 1, 9.0)));
        assert!(m(1, 1, 2.0).later_than(&m(1, 1, 1.0)));
        let mut h = [m(0, 3, 1.0), m(5, 1, 1.0), m(0, 2, 1.0)];
        h.sort_by(MlMetric::history_order);
        assert_eq!(h.map(|x| x.timestamp), [1, 2, 3]);
    }

    #[test]
    fn params_become_numbers_where_they_are_numbers() {
        assert_eq!(param_json("0.1"), serde_json::json!(0.1));
        assert_eq!(param_json("64"), serde_json::json!(64));
        assert_eq!(param_json("adam"), serde_json::json!("adam"));
        assert_eq!(param_json("True"), serde_json::json!(true));
        assert_eq!(param_json("nan"), serde_json::json!("nan"));
        assert_eq!(param_json("None"), serde_json::Value::Null);
        assert_eq!(param_json("none"), serde_json::json!("none"));
    }

    #[test]
    fn statuses_map_both_ways() {
        assert_eq!(status_from_mlflow("KILLED"), Some(RunStatus::Failed));
        assert_eq!(status_from_mlflow("SCHEDULED"), Some(RunStatus::Running));
        assert_eq!(status_from_mlflow("DONE"), None);
        let mut run = MlRun {
            id: Uuid::nil(),
            mlflow_id: String::new(),
            experiment_id: 0,
            name: String::new(),
            status: RunStatus::Failed,
            mlflow_status: Some("KILLED".into()),
            start_time: 0,
            end_time: None,
            user_id: String::new(),
            lifecycle_stage: "active".into(),
        };
        assert_eq!(run.mlflow_status(), "KILLED");
        run.status = RunStatus::Running; // revived by new data
        assert_eq!(run.mlflow_status(), "RUNNING");
        run.status = RunStatus::Crashed;
        assert_eq!(run.mlflow_status(), "FAILED");
    }
}
