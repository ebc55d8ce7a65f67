//! Storage: one [`Store`] over SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; the schema
//! differs only in column types (see `migrations/sqlite` and
//! `migrations/postgres`). Backend-specific behaviour is limited to
//! [`Backend`] checks: SQLite serialises writers behind one async mutex (it
//! has a single writer anyway, and this turns `SQLITE_BUSY` into queueing),
//! PostgreSQL serialises writers of one series with the row lock the series
//! upsert takes.
//!
//! Scalars are stored as compressed chunks by step range ([`chunk`]); every
//! write merges into the chunks it touches, so re-sending a (run, key, step)
//! replaces the point instead of duplicating it.

pub mod chunk;
pub mod diagnosis;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Executor, Row};
use thiserror::Error;
use uuid::Uuid;

use crate::charts::downsample;
use crate::record::{
    DatasetRecord, EndRecord, HistogramRecord, ModelRecord, Record, RunRecord, ScalarRecord, Value,
};
pub use chunk::Point;

/// Chunks with more points than this also store their envelope, so that a
/// downsampled read of a long series need not decode them.
const SUMMARY_MIN_POINTS: usize = 32;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("run not found")]
    RunNotFound,
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("another replica took over this run's diagnosis")]
    LeaseLost,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<chunk::ChunkError> for StoreError {
    fn from(e: chunk::ChunkError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Run status. `crashed` is for runs whose client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    Crashed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 4] = [Self::Running, Self::Finished, Self::Failed, Self::Crashed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Crashed => "crashed",
        }
    }
}

impl FromStr for RunStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or(())
    }
}

/// What a client sends to create a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub project: String,
    pub name: String,
    pub config: serde_json::Value,
    pub tags: Vec<String>,
}

impl From<RunRecord> for NewRun {
    fn from(r: RunRecord) -> Self {
        NewRun {
            project: r.project,
            name: r.name,
            config: r.config,
            tags: r.tags,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: Uuid,
    pub project: String,
    pub name: String,
    pub status: RunStatus,
    pub config: serde_json::Value,
    pub tags: Vec<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub heartbeat_at: Option<f64>,
    pub end_step: Option<u64>,
    /// Increases with every write of the run's data.
    pub data_version: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub project: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
    pub offset: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    pub name: String,
    pub runs: i64,
    pub created_at: f64,
}

/// A scalar series as listed for a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesInfo {
    pub key: String,
    pub count: i64,
    pub first_step: Option<u64>,
    pub last_step: Option<u64>,
    pub last_value: Option<Value>,
}

/// A histogram series as listed for a run.
/// A downsampled read.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// Points stored in the requested step range.
    pub total: usize,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramKey {
    pub key: String,
    pub count: i64,
    pub first_step: u64,
    pub last_step: u64,
}

/// Everything one ingest request writes, validated (see `crate::ingest`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Points per key in arrival order; a repeated step's last point wins.
    pub scalars: BTreeMap<String, Vec<Point>>,
    pub histograms: Vec<HistogramRecord>,
    pub model: Option<ModelRecord>,
    pub datasets: Vec<DatasetRecord>,
    pub end: Option<(RunStatus, Option<u64>)>,
}

impl Batch {
    pub fn point_count(&self) -> usize {
        self.scalars.values().map(Vec::len).sum()
    }

    /// Records accepted (points, histograms, model, datasets, end).
    pub fn record_count(&self) -> usize {
        self.point_count()
            + self.histograms.len()
            + usize::from(self.model.is_some())
            + self.datasets.len()
            + usize::from(self.end.is_some())
    }
}

/// Result of an ingest request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub accepted: u64,
    /// True when the `Idempotency-Key` was seen before and nothing was written.
    pub replayed: bool,
}

pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Serialises SQLite write transactions.
    write_lock: tokio::sync::Mutex<()>,
}

/// Normalises a database URL or bare SQLite path; returns it with its backend.
pub fn parse_database_url(url: &str) -> Result<(Backend, String)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::Url(format!(
            "{url:?}: expected postgres://…, sqlite://PATH or a file path"
        )));
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut out = format!("sqlite://{path}?mode=rwc");
    if !query.is_empty() {
        out.push('&');
        out.push_str(query);
    }
    Ok((Backend::Sqlite, out))
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// `SELECT` of the columns [`run_from_row`] reads, followed by `$tail`.
macro_rules! select_runs {
    ($tail:literal) => {
        concat!(
            "SELECT r.id, p.name AS project, r.name, r.status, r.config, r.tags, r.created_at, r.updated_at, \
             r.heartbeat_at, r.end_step, r.data_version FROM runs r JOIN projects p ON p.id = r.project_id ",
            $tail
        )
    };
}

impl Store {
    /// Opens (creating an SQLite file if needed) and migrates the database.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = parse_database_url(url)?;
        let options = AnyConnectOptions::from_str(&url)?;
        let max = if backend == Backend::Sqlite { 8 } else { 16 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer. NORMAL sync in WAL
                        // mode survives a process crash; see README.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 10000",
                        ] {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for the parts of trainlens that own their own tables.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        }
    }

    pub async fn create_run(&self, new: &NewRun) -> Result<Run> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let id = insert_run(&mut tx, new).await?;
        tx.commit().await?;
        drop(_guard);
        self.get_run(id).await?.ok_or(StoreError::RunNotFound)
    }

    pub async fn get_run(&self, id: Uuid) -> Result<Option<Run>> {
        let row = sqlx::query(select_runs!("WHERE r.id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    /// Runs, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let rows = sqlx::query(select_runs!(
            "WHERE (CAST($1 AS TEXT) IS NULL OR p.name = $1) AND (CAST($2 AS TEXT) IS NULL OR r.status = $2) \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
        ))
            .bind(filter.project.clone())
            .bind(filter.status.map(|s| s.as_str().to_string()))
            .bind(i64::from(filter.limit))
            .bind(i64::from(filter.offset))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(
            "SELECT p.name, p.created_at, CAST(COUNT(r.id) AS BIGINT) AS runs \
             FROM projects p LEFT JOIN runs r ON r.project_id = p.id \
             GROUP BY p.id, p.name, p.created_at ORDER BY p.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Project {
                    name: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                    runs: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Writes a batch into an existing run, all or nothing.
    pub async fn ingest(
        &self,
        run: Uuid,
        batch: &Batch,
        idempotency_key: Option<&str>,
    ) -> Result<IngestOutcome> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let run_id = run.to_string();
        let exists = sqlx::query("SELECT 1 FROM runs WHERE id = $1")
            .bind(&run_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::RunNotFound);
        }
        let accepted = batch.record_count() as u64;
        if let Some(key) = idempotency_key {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (run_id, key, accepted, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (run_id, key) DO NOTHING",
            )
            .bind(&run_id)
            .bind(key)
            .bind(accepted as i64)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                let before: i64 = sqlx::query_scalar(
                    "SELECT accepted FROM idempotency_keys WHERE run_id = $1 AND key = $2",
                )
                .bind(&run_id)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
                return Ok(IngestOutcome {
                    accepted: before as u64,
                    replayed: true,
                });
            }
        }
        write_batch(&mut tx, &run_id, batch).await?;
        tx.commit().await?;
        Ok(IngestOutcome {
            accepted,
            replayed: false,
        })
    }

    /// Creates a run and writes a whole recording into it, all or nothing.
    pub async fn import(&self, new: &NewRun, batch: &Batch) -> Result<Run> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let id = insert_run(&mut tx, new).await?;
        write_batch(&mut tx, &id.to_string(), batch).await?;
        tx.commit().await?;
        drop(_guard);
        self.get_run(id).await?.ok_or(StoreError::RunNotFound)
    }

    /// Sets the final status (and the last step, when given).
    pub async fn finish_run(&self, run: Uuid, status: RunStatus, step: Option<u64>) -> Result<Run> {
        let batch = Batch {
            end: Some((status, step)),
            ..Batch::default()
        };
        self.ingest(run, &batch, None).await?;
        self.get_run(run).await?.ok_or(StoreError::RunNotFound)
    }

    /// Records that the client is alive.
    pub async fn heartbeat(&self, run: Uuid) -> Result<Run> {
        let _guard = self.write_guard().await;
        // A heartbeat revives a run that was marked crashed.
        let done = sqlx::query(
            "UPDATE runs SET heartbeat_at = $2, \
             status = CASE WHEN status = 'crashed' THEN 'running' ELSE status END WHERE id = $1",
        )
        .bind(run.to_string())
        .bind(now())
        .execute(&self.pool)
        .await?;
        drop(_guard);
        if done.rows_affected() == 0 {
            return Err(StoreError::RunNotFound);
        }
        self.get_run(run).await?.ok_or(StoreError::RunNotFound)
    }

    /// Marks running runs with neither data nor a heartbeat for `stale_after`
    /// seconds as crashed (new data or a heartbeat makes them running again);
    /// returns how many.
    pub async fn mark_crashed(&self, stale_after: f64) -> Result<u64> {
        let _guard = self.write_guard().await;
        let now = now();
        let done = sqlx::query(
            "UPDATE runs SET status = 'crashed', data_version = data_version + 1 \
             WHERE status = 'running' AND updated_at < $1 AND COALESCE(heartbeat_at, 0) < $1",
        )
        .bind(now - stale_after)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Forgets `Idempotency-Key`s older than `max_age` seconds.
    pub async fn prune_idempotency_keys(&self, max_age: f64) -> Result<u64> {
        let _guard = self.write_guard().await;
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(now() - max_age)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn series(&self, run: Uuid) -> Result<Vec<SeriesInfo>> {
        let rows = sqlx::query(
            "SELECT key, count, first_step, last_step, last_value FROM series WHERE run_id = $1 ORDER BY key",
        )
        .bind(run.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let last: Option<Vec<u8>> = r.try_get(4)?;
                Ok(SeriesInfo {
                    key: r.try_get(0)?,
                    count: r.try_get(1)?,
                    first_step: r.try_get::<Option<i64>, _>(2)?.map(|s| s as u64),
                    last_step: r.try_get::<Option<i64>, _>(3)?.map(|s| s as u64),
                    last_value: last.as_deref().map(f64_from_blob).transpose()?.map(Value),
                })
            })
            .collect()
    }

    async fn series_id(&self, run: Uuid, key: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM series WHERE run_id = $1 AND key = $2")
                .bind(run.to_string())
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The points of one series with `from <= step <= to`, by step; `None`
    /// when the run has no such series.
    pub async fn points(
        &self,
        run: Uuid,
        key: &str,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Option<Vec<Point>>> {
        let (from, to) = step_range(from, to);
        let Some(series_id) = self.series_id(run, key).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT data FROM scalar_chunks WHERE series_id = $1 AND max_step >= $2 AND min_step <= $3 \
             ORDER BY chunk",
        )
        .bind(series_id)
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut points = Vec::new();
        for row in &rows {
            let blob: Vec<u8> = row.try_get(0)?;
            chunk::decode_into(&blob, &mut points)?;
        }
        points.retain(|p| p.step >= from && p.step <= to);
        Ok(Some(points))
    }

    /// The points of one series with `from <= step <= to`, downsampled to
    /// about `max_points` by [`downsample`]'s min/max envelope; `None` when
    /// the run has no such series.
    ///
    /// When the buckets are at least about a chunk wide, whole chunks are
    /// read from their stored envelopes and only the chunks cut by the range
    /// (or too small to have an envelope) are decoded.
    pub async fn downsampled(
        &self,
        run: Uuid,
        key: &str,
        from: Option<u64>,
        to: Option<u64>,
        max_points: usize,
    ) -> Result<Option<Sampled>> {
        let (from, to) = step_range(from, to);
        let Some(series_id) = self.series_id(run, key).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT n, min_step, max_step, summary FROM scalar_chunks \
             WHERE series_id = $1 AND max_step >= $2 AND min_step <= $3 ORDER BY chunk",
        )
        .bind(series_id)
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&self.pool)
        .await?;
        let (Some(first_row), Some(last_row)) = (rows.first(), rows.last()) else {
            return Ok(Some(Sampled {
                total: 0,
                points: Vec::new(),
            }));
        };
        let first = from.max(first_row.try_get::<i64, _>(1)? as u64);
        let last = to.min(last_row.try_get::<i64, _>(2)? as u64);
        let mut stored = 0usize;
        for r in &rows {
            stored += r.try_get::<i64, _>(0)? as usize;
        }
        let (_, raw_width) = downsample::buckets(first, last, max_points, 1);
        if stored <= max_points || raw_width < chunk::CHUNK_STEPS * 3 / 4 {
            let points = self
                .points(run, key, Some(from), Some(to))
                .await?
                .unwrap_or_default();
            let total = points.len();
            return Ok(Some(Sampled {
                total,
                points: downsample::downsample(&points, max_points),
            }));
        }

        // Whole chunks with an envelope contribute it; the others are decoded.
        let mut pieces: BTreeMap<i64, Vec<Point>> = BTreeMap::new();
        let mut total = 0usize;
        for r in &rows {
            let (min_step, max_step) = (r.try_get::<i64, _>(1)?, r.try_get::<i64, _>(2)?);
            let summary: Option<Vec<u8>> = r.try_get(3)?;
            if let Some(blob) = summary
                && min_step as u64 >= from
                && max_step as u64 <= to
            {
                total += r.try_get::<i64, _>(0)? as usize;
                pieces.insert(chunk::chunk_of(min_step as u64), chunk::decode(&blob)?);
            }
        }
        let rows = sqlx::query(
            "SELECT chunk, data FROM scalar_chunks WHERE series_id = $1 AND max_step >= $2 AND min_step <= $3 \
             AND (summary IS NULL OR min_step < $2 OR max_step > $3)",
        )
        .bind(series_id)
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let mut points = chunk::decode(&r.try_get::<Vec<u8>, _>(1)?)?;
            points.retain(|p| p.step >= from && p.step <= to);
            total += points.len();
            pieces.insert(r.try_get(0)?, points);
        }
        let points: Vec<Point> = pieces.into_values().flatten().collect();
        let (origin, width) = downsample::buckets(first, last, max_points, chunk::CHUNK_STEPS);
        Ok(Some(Sampled {
            total,
            points: downsample::downsample_by_width(&points, origin, width),
        }))
    }

    pub async fn histogram_keys(&self, run: Uuid) -> Result<Vec<HistogramKey>> {
        let rows = sqlx::query(
            "SELECT key, CAST(COUNT(*) AS BIGINT), MIN(step), MAX(step) FROM histograms WHERE run_id = $1 \
             GROUP BY key ORDER BY key",
        )
        .bind(run.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistogramKey {
                    key: r.try_get(0)?,
                    count: r.try_get(1)?,
                    first_step: r.try_get::<i64, _>(2)? as u64,
                    last_step: r.try_get::<i64, _>(3)? as u64,
                })
            })
            .collect()
    }

    /// Histograms of a run (of one key when given), by key then step.
    pub async fn histograms(&self, run: Uuid, key: Option<&str>) -> Result<Vec<HistogramRecord>> {
        let rows = sqlx::query(
            "SELECT key, step, edges, counts, nonfinite FROM histograms \
             WHERE run_id = $1 AND (CAST($2 AS TEXT) IS NULL OR key = $2) ORDER BY key, step",
        )
        .bind(run.to_string())
        .bind(key.map(str::to_string))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistogramRecord {
                    key: r.try_get(0)?,
                    step: r.try_get::<i64, _>(1)? as u64,
                    edges: json_column(r, 2)?,
                    counts: json_column(r, 3)?,
                    nonfinite: r.try_get::<i64, _>(4)? as u64,
                })
            })
            .collect()
    }

    pub async fn model(&self, run: Uuid) -> Result<Option<ModelRecord>> {
        let row = sqlx::query("SELECT body FROM models WHERE run_id = $1")
            .bind(run.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| json_column(&r, 0)).transpose()
    }

    pub async fn datasets(&self, run: Uuid) -> Result<Vec<DatasetRecord>> {
        let rows = sqlx::query("SELECT body FROM datasets WHERE run_id = $1 ORDER BY split")
            .bind(run.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| json_column(r, 0)).collect()
    }

    /// The run as a recording: `run`, `model`, `dataset`s, then scalars and
    /// histograms by step, then `end` when the run is over.
    pub async fn export(&self, run: Uuid) -> Result<Vec<Record>> {
        let meta = self.get_run(run).await?.ok_or(StoreError::RunNotFound)?;
        let mut out = vec![Record::Run(RunRecord {
            name: meta.name.clone(),
            project: meta.project.clone(),
            config: meta.config.clone(),
            tags: meta.tags.clone(),
        })];
        if let Some(model) = self.model(run).await? {
            out.push(Record::Model(model));
        }
        out.extend(self.datasets(run).await?.into_iter().map(Record::Dataset));
        let mut timeline: Vec<(u64, Record)> = Vec::new();
        for s in self.series(run).await? {
            for p in self
                .points(run, &s.key, None, None)
                .await?
                .unwrap_or_default()
            {
                timeline.push((
                    p.step,
                    Record::Scalar(ScalarRecord {
                        step: p.step,
                        key: s.key.clone(),
                        value: Value(p.value),
                        time: p.time,
                    }),
                ));
            }
        }
        for h in self.histograms(run, None).await? {
            timeline.push((h.step, Record::Histogram(h)));
        }
        timeline.sort_by_key(|(step, _)| *step);
        out.extend(timeline.into_iter().map(|(_, r)| r));
        if meta.status != RunStatus::Running {
            out.push(Record::End(EndRecord {
                status: meta.status.as_str().to_string(),
                step: meta.end_step,
            }));
        }
        Ok(out)
    }
}

async fn insert_run(conn: &mut AnyConnection, new: &NewRun) -> Result<Uuid> {
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
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO runs (id, project_id, name, config, tags, created_at, updated_at, heartbeat_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
    )
    .bind(id.to_string())
    .bind(project_id)
    .bind(&new.name)
    .bind(new.config.to_string())
    .bind(serde_json::to_string(&new.tags).expect("tags serialise"))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

async fn write_batch(conn: &mut AnyConnection, run: &str, batch: &Batch) -> Result<()> {
    for (key, points) in &batch.scalars {
        if !points.is_empty() {
            write_series(conn, run, key, points).await?;
        }
    }
    for h in &batch.histograms {
        sqlx::query(
            "INSERT INTO histograms (run_id, key, step, edges, counts, nonfinite) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (run_id, key, step) DO UPDATE SET edges = excluded.edges, counts = excluded.counts, \
             nonfinite = excluded.nonfinite",
        )
        .bind(run)
        .bind(&h.key)
        .bind(h.step as i64)
        .bind(serde_json::to_string(&h.edges).expect("edges serialise"))
        .bind(serde_json::to_string(&h.counts).expect("counts serialise"))
        .bind(h.nonfinite as i64)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(model) = &batch.model {
        sqlx::query(
            "INSERT INTO models (run_id, body) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET body = excluded.body",
        )
        .bind(run)
        .bind(serde_json::to_string(model).expect("model serialises"))
        .execute(&mut *conn)
        .await?;
    }
    for d in &batch.datasets {
        sqlx::query(
            "INSERT INTO datasets (run_id, split, body) VALUES ($1, $2, $3) \
             ON CONFLICT (run_id, split) DO UPDATE SET body = excluded.body",
        )
        .bind(run)
        .bind(&d.split)
        .bind(serde_json::to_string(d).expect("dataset serialises"))
        .execute(&mut *conn)
        .await?;
    }
    // Last, so that on PostgreSQL the run row is locked only until commit.
    let (status, end_step) = match batch.end {
        Some((status, step)) => (Some(status.as_str().to_string()), step.map(|s| s as i64)),
        None => (None, None),
    };
    sqlx::query(
        "UPDATE runs SET updated_at = $2, data_version = data_version + 1, \
         status = COALESCE(CAST($3 AS TEXT), CASE WHEN status = 'crashed' THEN 'running' ELSE status END), \
         end_step = COALESCE($4, end_step) WHERE id = $1",
    )
    .bind(run)
    .bind(now())
    .bind(status)
    .bind(end_step)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Merges `points` (arrival order) into the series' chunks.
async fn write_series(
    conn: &mut AnyConnection,
    run: &str,
    key: &str,
    points: &[Point],
) -> Result<()> {
    let mut new = points.to_vec();
    new.sort_by_key(|p| p.step); // stable: the last of equal steps stays last
    let row = sqlx::query(
        "INSERT INTO series (run_id, key) VALUES ($1, $2) \
         ON CONFLICT (run_id, key) DO UPDATE SET key = excluded.key \
         RETURNING id, count, first_step, last_step",
    )
    .bind(run)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    let series_id: i64 = row.try_get(0)?;
    let mut count: i64 = row.try_get(1)?;
    let first_step: Option<i64> = row.try_get(2)?;
    let last_step: Option<i64> = row.try_get(3)?;

    let lo = chunk::chunk_of(new[0].step);
    let hi = chunk::chunk_of(new[new.len() - 1].step);
    let rows = sqlx::query(
        "SELECT chunk, n, data FROM scalar_chunks WHERE series_id = $1 AND chunk >= $2 AND chunk <= $3",
    )
    .bind(series_id)
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut *conn)
    .await?;
    let mut existing: HashMap<i64, (i64, Vec<u8>)> = HashMap::with_capacity(rows.len());
    for r in &rows {
        existing.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
    }

    let mut start = 0;
    while start < new.len() {
        let c = chunk::chunk_of(new[start].step);
        let end = start
            + new[start..]
                .iter()
                .take_while(|p| chunk::chunk_of(p.step) == c)
                .count();
        let (old_n, old_points) = match existing.get(&c) {
            Some((n, blob)) => (*n, chunk::decode(blob)?),
            None => (0, Vec::new()),
        };
        let merged = chunk::merge(&old_points, &new[start..end]);
        let st = chunk::stats(&merged);
        let summary = (merged.len() > SUMMARY_MIN_POINTS).then(|| {
            let mut env = Vec::new();
            downsample::envelope(&merged, &mut env);
            chunk::encode(&env)
        });
        sqlx::query(
            "INSERT INTO scalar_chunks \
             (series_id, chunk, n, min_step, max_step, min_value, max_value, nonfinite, data, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (series_id, chunk) DO UPDATE SET n = excluded.n, min_step = excluded.min_step, \
             max_step = excluded.max_step, min_value = excluded.min_value, max_value = excluded.max_value, \
             nonfinite = excluded.nonfinite, data = excluded.data, summary = excluded.summary",
        )
        .bind(series_id)
        .bind(c)
        .bind(st.n)
        .bind(st.min_step)
        .bind(st.max_step)
        // No finite value: NaN, never a NULL f64 — sqlx 0.9's Any driver
        // declares a NULL f64 as float4 on PostgreSQL, which poisons the
        // cached statement for the next non-NULL value. SQLite stores NaN as NULL.
        .bind(st.min_value.unwrap_or(f64::NAN))
        .bind(st.max_value.unwrap_or(f64::NAN))
        .bind(st.nonfinite)
        .bind(chunk::encode(&merged))
        .bind(summary)
        .execute(&mut *conn)
        .await?;
        count += st.n - old_n;
        start = end;
    }

    let newest = new[new.len() - 1];
    let first = first_step.map_or(new[0].step as i64, |f| f.min(new[0].step as i64));
    let (last, last_value) = match last_step {
        Some(l) if l > newest.step as i64 => (l, None),
        _ => (
            newest.step as i64,
            Some(newest.value.to_le_bytes().to_vec()),
        ),
    };
    sqlx::query(
        "UPDATE series SET count = $2, first_step = $3, last_step = $4, last_value = COALESCE($5, last_value) \
         WHERE id = $1",
    )
    .bind(series_id)
    .bind(count)
    .bind(first)
    .bind(last)
    .bind(last_value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An inclusive step range with defaults, within what steps can be.
fn step_range(from: Option<u64>, to: Option<u64>) -> (u64, u64) {
    let max = i64::MAX as u64;
    (from.unwrap_or(0).min(max), to.unwrap_or(max).min(max))
}

fn run_from_row(r: &AnyRow) -> Result<Run> {
    let id: String = r.try_get("id")?;
    let status: String = r.try_get("status")?;
    Ok(Run {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("run id {id:?}: {e}")))?,
        project: r.try_get("project")?,
        name: r.try_get("name")?,
        status: status
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("run status {status:?}")))?,
        config: json_column(r, "config")?,
        tags: json_column(r, "tags")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        heartbeat_at: r.try_get("heartbeat_at")?,
        end_step: r.try_get::<Option<i64>, _>("end_step")?.map(|s| s as u64),
        data_version: r.try_get("data_version")?,
    })
}

fn json_column<T: serde::de::DeserializeOwned, I: sqlx::ColumnIndex<AnyRow>>(
    r: &AnyRow,
    i: I,
) -> Result<T> {
    let text: String = r.try_get(i)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

fn f64_from_blob(b: &[u8]) -> Result<f64> {
    let bytes: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("last_value is not 8 bytes".into()))?;
    Ok(f64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            parse_database_url("trainlens.db").unwrap(),
            (Backend::Sqlite, "sqlite://trainlens.db?mode=rwc".into())
        );
        assert_eq!(
            parse_database_url("sqlite:///tmp/x.db").unwrap(),
            (Backend::Sqlite, "sqlite:///tmp/x.db?mode=rwc".into())
        );
        assert_eq!(
            parse_database_url("postgres://u@h/db").unwrap().0,
            Backend::Postgres
        );
        assert!(parse_database_url("mysql://x").is_err());
        assert!(parse_database_url("").is_err());
    }
}
