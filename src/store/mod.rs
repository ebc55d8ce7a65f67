//! Storage: one [`Store`] over SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; the schema
//! differs only in column types (see `migrations/sqlite` and
//! `migrations/postgres`). Backend differences live here, in [`Store::connect`]
//! and [`Store::begin_write`]. Rows are read by column name into
//! `#[derive(FromRow)]` row structs next to the queries that select them.
//!
//! One file per aggregate — the table of contents:
//! - [`runs`]: projects and runs (create, find by `run_key`, list, heartbeat,
//!   crash marking);
//! - [`scalars`]: scalar series stored as compressed [`chunk`]s, full and
//!   envelope reads;
//! - [`records`]: ingest and import of a [`Batch`] (all or nothing, with
//!   idempotency keys), histograms, model and dataset summaries, images,
//!   tensors and predictions, and export;
//! - [`findings`]: diagnosis leases, the run view the detectors read, findings;
//! - [`webhooks`]: webhooks and the alert outbox;
//! - [`live`]: what the live pages' event streams poll (a run's versions,
//!   the runs that changed lately);
//! - [`compare`]: the reads of the compare and tune pages (chosen runs with
//!   their configs, a project's metric summaries from the chunks' stored
//!   minima and maxima);
//! - [`mlflow`]: what the MLflow tracking API keeps beside a run (status,
//!   params, tags, latest metrics, step mappings);
//! - [`mlflow_meta`]: what it keeps about experiments and models (experiment
//!   tags, MLflow 3's logged models).
//!
//! # Writes
//! Every write runs in a [`WriteTx`]: on SQLite it holds the process's write
//! lock and opens with `BEGIN IMMEDIATE` (so a second process waits on the
//! busy timeout instead of failing on a read-to-write upgrade); it commits
//! explicitly, and a transaction that fails or is dropped is rolled back —
//! when even the rollback fails (disk full, connection gone), the connection
//! is closed instead of going back to the pool, so no pooled connection ever
//! carries a half-open transaction into the next request.

/// `impl TryFrom<$row> for $out` failing with a [`StoreError`]: `$body`
/// builds the domain value from the row `$r`, checking the words, ids and
/// JSON text it holds. Every aggregate's row structs convert this way.
macro_rules! try_from_row {
    ($row:ty => $out:ty, |$r:ident| $body:block) => {
        impl TryFrom<$row> for $out {
            type Error = $crate::store::StoreError;
            fn try_from($r: $row) -> $crate::store::Result<$out> $body
        }
    };
}

/// Runs `$work`, with `$tx` the `&mut` [`WriteTx`], in a write transaction
/// of its own: committed when `$work` answers `Ok`, rolled back otherwise
/// (see [`WriteTx::finish`]); a `?` in `$work` ends the transaction, not
/// the caller. A macro rather than a method taking an async closure, whose
/// future the compiler cannot show to be `Send` for every borrow.
macro_rules! in_write {
    ($store:expr, |$tx:ident| $work:expr) => {{
        let mut tx = $store.begin_write().await?;
        let done = async {
            let $tx = &mut tx;
            $work
        }
        .await;
        tx.finish(done).await
    }};
}

pub mod chunk;
pub mod compare;
pub mod findings;
pub mod live;
pub mod mlflow;
pub mod mlflow_meta;
pub mod records;
pub mod runs;
pub mod scalars;
pub mod webhooks;

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::query::QueryAs;
use sqlx::{Any, AnyConnection, AnyPool, Executor, FromRow, SqlSafeStr};
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("run not found")]
    RunNotFound,
    #[error("invalid database url: {0}")]
    Url(String),
    /// The disk (or the configured size limit) is full: nothing was written.
    #[error("the database is full: {0}")]
    Full(String),
    /// The database cannot be reached or is busy: try again later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("another replica took over this run's diagnosis")]
    LeaseLost,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The write would take a run past a size limit: nothing was written.
    #[error("{message}")]
    TooLarge { field: String, message: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        classify(e)
    }
}

/// Sorts database errors into what a client can act on: full (507), out of
/// reach or busy (503), anything else.
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let message = db.message().to_ascii_lowercase();
            // SQLite: SQLITE_FULL (13); PostgreSQL: class 53 (insufficient
            // resources: disk_full 53100, out_of_memory 53200, …).
            if code == "13" || message.contains("database or disk is full") || code == "53100" {
                StoreError::Full(db.message().to_string())
            // SQLite: SQLITE_BUSY (5 and its extended codes), SQLITE_LOCKED (6);
            // PostgreSQL: admin shutdown, cannot connect now, too many clients,
            // a dropped database (3D000 on connect).
            } else if matches!(code.as_ref(), "5" | "6" | "517" | "261" | "773")
                || message.contains("database is locked")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "3D000"
                )
            {
                StoreError::Unavailable(db.message().to_string())
            } else {
                StoreError::Db(e)
            }
        }
        _ => StoreError::Db(e),
    }
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

/// How to open the database.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a request waits for a connection (and so for an unreachable
    /// PostgreSQL) before it is answered 503.
    pub acquire_timeout: Duration,
    /// SQLite: `PRAGMA max_page_count` on every connection, a size quota;
    /// writes past it fail as if the disk were full.
    pub sqlite_max_page_count: Option<u64>,
    /// Most scalar series in one run ([`crate::ingest::Limits::max_keys_per_run`]):
    /// a batch that would create more is refused whole.
    pub max_keys_per_run: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            acquire_timeout: Duration::from_secs(2),
            sqlite_max_page_count: None,
            max_keys_per_run: crate::ingest::Limits::default().max_keys_per_run,
        }
    }
}

pub struct Store {
    pool: AnyPool,
    /// The live pages' polls (`live.rs`) read through this small pool of
    /// their own: however many pages are open, they never take a
    /// connection from requests, ingest or the diagnosis.
    live_pool: AnyPool,
    backend: Backend,
    /// Serialises this process's SQLite write transactions (SQLite has one
    /// writer anyway; this turns contention into queueing).
    write_lock: tokio::sync::Mutex<()>,
    max_keys_per_run: usize,
    /// What this process committed, for the service's metrics.
    points_written: AtomicU64,
    records_written: AtomicU64,
}

/// What a store committed since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// Scalar points.
    pub points: u64,
    /// Records of every type, points included.
    pub records: u64,
}

/// The operational figures `/metrics` reports, read from the database.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OpsStats {
    /// Runs whose data is newer than their diagnosis.
    pub stale_runs: u64,
    /// Seconds since the oldest of them got its newest data (0: none).
    pub lag_seconds: f64,
    pub outbox_pending: u64,
    pub outbox_delivered: u64,
    pub outbox_failed: u64,
    /// Connections open, and of them idle.
    pub pool_size: u32,
    pub pool_idle: usize,
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

/// Where a database URL points, without its password: for messages.
pub fn describe_database_url(url: &str) -> String {
    match parse_database_url(url) {
        Ok((Backend::Postgres, u)) => match reqwest::Url::parse(&u) {
            Ok(parsed) => format!(
                "PostgreSQL at {}:{}{}",
                parsed.host_str().unwrap_or("localhost"),
                parsed.port().unwrap_or(5432),
                parsed.path()
            ),
            Err(_) => "PostgreSQL".to_string(),
        },
        Ok((Backend::Sqlite, u)) => {
            let path = u.trim_start_matches("sqlite://");
            format!("SQLite file {}", path.split('?').next().unwrap_or(path))
        }
        Err(_) => url.to_string(),
    }
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The options of a pool of at most `max` connections: every connection
/// of either pool set up the same way.
fn pool_options(backend: Backend, max: u32, opts: &StoreOptions) -> AnyPoolOptions {
    let max_pages = opts.sqlite_max_page_count;
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(opts.acquire_timeout)
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
                    if let Some(pages) = max_pages {
                        let pragma = format!("PRAGMA max_page_count = {pages}");
                        sqlx::query(sqlx::AssertSqlSafe(pragma))
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                Ok(())
            })
        })
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Opens (creating an SQLite file if needed) and migrates the database.
    pub async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, opts: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = parse_database_url(url)?;
        let options = AnyConnectOptions::from_str(&url).map_err(classify)?;
        let max = if backend == Backend::Sqlite { 8 } else { 16 };
        let pool = pool_options(backend, max, opts)
            .connect_with(options.clone())
            .await
            .map_err(classify)?;
        // Connects when a live page first polls.
        let live_pool = pool_options(backend, live::READERS, opts).connect_lazy_with(options);
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store {
            pool,
            live_pool,
            backend,
            write_lock: tokio::sync::Mutex::new(()),
            max_keys_per_run: opts.max_keys_per_run,
            points_written: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
        })
    }

    /// What this store committed since it was opened.
    pub fn written(&self) -> Written {
        Written {
            points: self.points_written.load(Ordering::Relaxed),
            records: self.records_written.load(Ordering::Relaxed),
        }
    }

    /// Counts a committed batch.
    pub(crate) fn count_written(&self, batch: &crate::model::Batch) {
        self.points_written
            .fetch_add(batch.point_count() as u64, Ordering::Relaxed);
        self.records_written
            .fetch_add(batch.record_count() as u64, Ordering::Relaxed);
    }

    /// Counts committed points written other than as a [`Batch`] record
    /// count (MLflow's metrics).
    ///
    /// [`Batch`]: crate::model::Batch
    pub(crate) fn count_points(&self, n: u64) {
        self.points_written.fetch_add(n, Ordering::Relaxed);
        self.records_written.fetch_add(n, Ordering::Relaxed);
    }

    /// The diagnosis queue, the outbox and the pool, for `/metrics`.
    pub async fn ops_stats(&self) -> Result<OpsStats> {
        let (stale, oldest): (i64, Option<f64>) = sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT), MIN(r.updated_at) FROM runs r \
             LEFT JOIN diagnosis_state d ON d.run_id = r.id \
             WHERE COALESCE(d.diagnosed_version, 0) < r.data_version",
        )
        .fetch_one(&self.pool)
        .await?;
        let outbox: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, CAST(COUNT(*) AS BIGINT) FROM alert_outbox GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        let count = |state: &str| {
            outbox
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n as u64)
        };
        Ok(OpsStats {
            stale_runs: stale as u64,
            lag_seconds: oldest.map_or(0.0, |t| (now() - t).max(0.0)),
            outbox_pending: count("pending"),
            outbox_delivered: count("delivered"),
            outbox_failed: count("failed"),
            pool_size: self.pool.size(),
            pool_idle: self.pool.num_idle(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.live_pool.close().await;
        self.pool.close().await;
    }

    /// Whether the database answers a trivial query now.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The rows a query about one run answers (see [`run_query`]).
    pub(crate) async fn run_rows<R: Row>(&self, sql: impl SqlSafeStr, run: Uuid) -> Result<Vec<R>> {
        Ok(run_query(sql, run).fetch_all(self.pool()).await?)
    }

    /// The row, if any, a query about one run answers (see [`run_query`]).
    pub(crate) async fn run_row<R: Row>(
        &self,
        sql: impl SqlSafeStr,
        run: Uuid,
    ) -> Result<Option<R>> {
        Ok(run_query(sql, run).fetch_optional(self.pool()).await?)
    }

    /// Opens a write transaction (see the module doc).
    pub(crate) async fn begin_write(&self) -> Result<WriteTx<'_>> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        };
        let conn = self.pool.acquire().await?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        // The WriteTx exists before BEGIN is sent: a request cancelled while
        // BEGIN runs drops it, and its Drop rolls back (or closes) the
        // connection. A bare connection would go back to the pool inside the
        // transaction BEGIN IMMEDIATE opened, holding SQLite's write lock, and
        // every other writer would time out on it.
        let mut tx = WriteTx {
            conn: Some(conn),
            _guard: guard,
        };
        if let Err(e) = tx.execute(begin).await {
            // Whatever state it is in, this connection is not reused.
            if let Some(conn) = tx.conn.take() {
                let _ = conn.close().await;
            }
            return Err(e.into());
        }
        Ok(tx)
    }

    /// Runs one statement as its own write transaction.
    pub(crate) async fn write_one<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    ) -> Result<u64> {
        in_write!(self, |tx| Ok(query
            .execute(&mut **tx)
            .await?
            .rows_affected()))
    }
}

/// A row struct read by column name.
pub(crate) trait Row: for<'r> FromRow<'r, AnyRow> + Send + Unpin {}

impl<R: for<'r> FromRow<'r, AnyRow> + Send + Unpin> Row for R {}

/// A query about one run: `sql` binds the run's id as `$1` and nothing else.
fn run_query<R: Row>(sql: impl SqlSafeStr, run: Uuid) -> QueryAs<'static, Any, R, AnyArguments> {
    sqlx::query_as(sql).bind(run.to_string())
}

/// A write transaction: commit it with [`WriteTx::finish`]; dropped without
/// it, it is rolled back (or its connection closed).
pub(crate) struct WriteTx<'s> {
    conn: Option<PoolConnection<Any>>,
    _guard: Option<tokio::sync::MutexGuard<'s, ()>>,
}

impl WriteTx<'_> {
    /// Commits when `result` is `Ok`, rolls back otherwise; returns `result`
    /// or the commit's error.
    pub(crate) async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        // The connection stays in `self` until the transaction has ended: a
        // request cancelled during COMMIT or ROLLBACK drops `self`, and Drop
        // rolls back (or closes) the connection.
        let conn = self.conn.as_mut().expect("a WriteTx is finished once");
        let (result, reuse) = match result {
            Ok(v) => match conn.execute("COMMIT").await {
                Ok(_) => (Ok(v), true),
                Err(e) => {
                    // SQLite keeps the transaction open after a failed COMMIT
                    // (SQLITE_FULL, SQLITE_BUSY): end it, and do not reuse it.
                    let _ = conn.execute("ROLLBACK").await;
                    (Err(e.into()), false)
                }
            },
            Err(e) => {
                let rolled_back = conn.execute("ROLLBACK").await.is_ok();
                (Err(e), rolled_back)
            }
        };
        let conn = self.conn.take().expect("an open WriteTx");
        if !reuse {
            let _ = conn.close().await;
        }
        result
    }
}

async fn rollback(mut conn: PoolConnection<Any>) {
    if conn.execute("ROLLBACK").await.is_err() {
        let _ = conn.close().await;
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Dropped mid-way (an early `?`, a cancelled request): roll back
            // before the connection can be reused. Without a runtime, closing
            // the connection (by dropping it detached) rolls back as well.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(rollback(conn));
                }
                Err(_) => drop(conn.detach()),
            }
        }
    }
}

impl Deref for WriteTx<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.conn.as_ref().expect("an open WriteTx")
    }
}

impl DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("an open WriteTx")
    }
}

/// `$n, $n+1, …` placeholders for `count` values from `first`.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes a JSON text column.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored {what}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("stored values serialise")
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("run id {s:?}: {e}")))
}

pub(crate) fn parse_word<T: FromStr<Err = crate::model::ParseWordError>>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|e: crate::model::ParseWordError| StoreError::Corrupt(e.to_string()))
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

    #[test]
    fn described_urls_hide_the_password() {
        let d = describe_database_url("postgres://u:secret@db.internal:6543/runs");
        assert_eq!(d, "PostgreSQL at db.internal:6543/runs");
        assert_eq!(describe_database_url("x.db"), "SQLite file x.db");
    }
}
