//! Projects and runs.

use sqlx::{AnyConnection, FromRow};
use uuid::Uuid;

use super::{Result, Store, StoreError, WriteTx, from_json, now, parse_uuid, parse_word, to_json};
use crate::model::{Config, NewRun, Project, Run, RunFilter, SeriesInfo};

/// `SELECT` of the columns of [`RunRow`], followed by `$tail`.
macro_rules! select_runs {
    ($tail:literal) => {
        select_runs!("r.config", $tail)
    };
    ($config:literal, $tail:literal) => {
        concat!(
            "SELECT r.id, p.name AS project, r.name, r.status, ",
            $config,
            " AS config, r.tags, r.run_key, r.created_at, \
             r.updated_at, r.heartbeat_at, r.end_step, r.data_version \
             FROM runs r JOIN projects p ON p.id = r.project_id ",
            $tail
        )
    };
}

#[derive(FromRow)]
pub(crate) struct RunRow {
    id: String,
    project: String,
    name: String,
    status: String,
    /// `None` from the lists that leave configs off.
    config: Option<String>,
    tags: String,
    run_key: Option<String>,
    created_at: f64,
    updated_at: f64,
    heartbeat_at: Option<f64>,
    end_step: Option<i64>,
    data_version: i64,
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;
    fn try_from(r: RunRow) -> Result<Run> {
        Ok(Run {
            id: parse_uuid(&r.id)?,
            project: r.project,
            name: r.name,
            status: parse_word(&r.status)?,
            config: r
                .config
                .map(|text| {
                    Config::from_text(text)
                        .map_err(|e| StoreError::Corrupt(format!("run config: {e}")))
                })
                .transpose()?,
            tags: from_json("run tags", &r.tags)?,
            run_key: r.run_key,
            created_at: r.created_at,
            updated_at: r.updated_at,
            heartbeat_at: r.heartbeat_at,
            end_step: r.end_step.map(|s| s as u64),
            data_version: r.data_version,
        })
    }
}

#[derive(FromRow)]
struct ProjectRow {
    name: String,
    created_at: f64,
    runs: i64,
}

/// A run that was created, or found by its `run_key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub run: Run,
    /// False when a run with the same `run_key` already existed.
    pub created: bool,
}

impl Store {
    /// Creates a run — or, when the project already has a run with
    /// `new.run_key`, returns that one.
    pub async fn create_run(&self, new: &NewRun) -> Result<Run> {
        Ok(self.open_run(new).await?.run)
    }

    /// [`Store::create_run`], saying whether the run is new.
    pub async fn open_run(&self, new: &NewRun) -> Result<Created> {
        let mut tries = 0;
        let (id, created) = loop {
            let mut tx = self.begin_write().await?;
            let found = insert_run(&mut tx, new).await;
            match tx.finish(found).await {
                // Two replicas created the same run_key at once: the other won.
                Err(e) if is_unique_violation(&e) && new.run_key.is_some() && tries == 0 => {
                    tries += 1;
                }
                other => break other?,
            }
        };
        let run = self.get_run(id).await?.ok_or(StoreError::RunNotFound)?;
        Ok(Created { run, created })
    }

    pub async fn get_run(&self, id: Uuid) -> Result<Option<Run>> {
        let row: Option<RunRow> = sqlx::query_as(select_runs!("WHERE r.id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.map(Run::try_from).transpose()
    }

    /// Runs, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        const WITH_CONFIG: &str = select_runs!(
            "r.config",
            "WHERE (CAST($1 AS TEXT) IS NULL OR p.name = $1) AND (CAST($2 AS TEXT) IS NULL OR r.status = $2) \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
        );
        const WITHOUT_CONFIG: &str = select_runs!(
            "CAST(NULL AS TEXT)",
            "WHERE (CAST($1 AS TEXT) IS NULL OR p.name = $1) AND (CAST($2 AS TEXT) IS NULL OR r.status = $2) \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
        );
        let sql = if filter.with_config {
            WITH_CONFIG
        } else {
            WITHOUT_CONFIG
        };
        let rows: Vec<RunRow> = sqlx::query_as(sql)
            .bind(filter.project.clone())
            .bind(filter.status.map(|s| s.as_str().to_string()))
            .bind(i64::from(filter.limit))
            .bind(i64::from(filter.offset))
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(Run::try_from).collect()
    }

    /// Every run of `project` (newest first, with its config) and its
    /// series, loaded a page of runs at a time: the runs table's data.
    pub async fn runs_with_series(&self, project: &str) -> Result<Vec<(Run, Vec<SeriesInfo>)>> {
        const PAGE: u32 = 1000;
        let mut out = Vec::new();
        loop {
            let filter = RunFilter {
                project: Some(project.to_string()),
                status: None,
                limit: PAGE,
                offset: out.len() as u32,
                with_config: true,
            };
            let page = self.list_runs(&filter).await?;
            let full = page.len() as u32 == PAGE;
            for run in page {
                let series = self.series(run.id).await?;
                out.push((run, series));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows: Vec<ProjectRow> = sqlx::query_as(
            "SELECT p.name, p.created_at, CAST(COUNT(r.id) AS BIGINT) AS runs \
             FROM projects p LEFT JOIN runs r ON r.project_id = p.id \
             GROUP BY p.id, p.name, p.created_at ORDER BY p.name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Project {
                name: r.name,
                created_at: r.created_at,
                runs: r.runs,
            })
            .collect())
    }

    /// Records that the client is alive.
    pub async fn heartbeat(&self, run: Uuid) -> Result<Run> {
        // A heartbeat revives a run that was marked crashed.
        let updated = self
            .write_one(
                sqlx::query(
                    "UPDATE runs SET heartbeat_at = $2, \
                     status = CASE WHEN status = 'crashed' THEN 'running' ELSE status END WHERE id = $1",
                )
                .bind(run.to_string())
                .bind(now()),
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::RunNotFound);
        }
        self.get_run(run).await?.ok_or(StoreError::RunNotFound)
    }

    /// Marks running runs with neither data nor a heartbeat for `stale_after`
    /// seconds as crashed (new data or a heartbeat makes them running again);
    /// returns how many.
    pub async fn mark_crashed(&self, stale_after: f64) -> Result<u64> {
        let now = now();
        self.write_one(
            sqlx::query(
                "UPDATE runs SET status = 'crashed', data_version = data_version + 1 \
                 WHERE status = 'running' AND updated_at < $1 AND COALESCE(heartbeat_at, 0) < $1",
            )
            .bind(now - stale_after),
        )
        .await
    }

    /// Forgets `Idempotency-Key`s older than `max_age` seconds.
    pub async fn prune_idempotency_keys(&self, max_age: f64) -> Result<u64> {
        self.write_one(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(now() - max_age),
        )
        .await
    }
}

pub(crate) fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(db)) if db.is_unique_violation())
}

/// Inserts a run (and its project) — or finds the project's run with the same
/// `run_key` — inside `tx`; returns its id and whether it is new.
pub(crate) async fn insert_run(tx: &mut WriteTx<'_>, new: &NewRun) -> Result<(Uuid, bool)> {
    let conn: &mut AnyConnection = tx;
    let now = now();
    sqlx::query(
        "INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&new.project)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let project_id: i64 = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
        .bind(&new.project)
        .fetch_one(&mut *conn)
        .await?;
    if let Some(key) = &new.run_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM runs WHERE project_id = $1 AND run_key = $2")
                .bind(project_id)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(id) = existing {
            return Ok((parse_uuid(&id)?, false));
        }
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO runs (id, project_id, name, config, tags, run_key, created_at, updated_at, heartbeat_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7)",
    )
    .bind(id.to_string())
    .bind(project_id)
    .bind(&new.name)
    .bind(new.config.to_string())
    .bind(to_json(&new.tags))
    .bind(new.run_key.clone())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok((id, true))
}
