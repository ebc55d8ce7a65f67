//! trainlens load benchmark: spawns `trainlens serve` as a child process and
//! drives it over loopback HTTP. See README.md.

mod api;
mod data;
mod pg;
mod report;
mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use tokio::task::JoinSet;

use data::{Batch, IngestData};
use report::{BackendReport, Disk, IngestRep, IngestSummary, ReadBench, ReadSummary};
use server::{Server, ServerStop};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Load benchmark for the trainlens server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Path to the trainlens binary (run as `<bin> serve --bind .. --database-url ..`).
    #[arg(long)]
    server_bin: PathBuf,
    /// Which storage backend(s) to benchmark.
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// An existing PostgreSQL database to connect to for creating (and
    /// dropping) the throw-away `trainlens_bench_<random>` databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// Ingest repetitions per backend (each on a fresh database and server).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Smoke run: every size shrunk 10x (targets then only indicative).
    #[arg(long)]
    quick: bool,
    /// Concurrent ingest clients (each owns a disjoint set of keys).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Number of metric keys in the ingest run.
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Steps per key in the ingest run [default: 50000, --quick: 5000].
    #[arg(long)]
    steps: Option<u64>,
    /// Points per POST request (one key x this many steps)
    /// [default: 10000, --quick: 1000].
    #[arg(long)]
    batch: Option<usize>,
    /// Points in the series read in full [default: 100000, --quick: 10000].
    #[arg(long)]
    full_read_points: Option<u64>,
    /// Points in the series read with max_points [default: 1000000, --quick: 100000].
    #[arg(long)]
    downsampled_read_points: Option<u64>,
    /// max_points of the downsampled read.
    #[arg(long, default_value_t = 1000)]
    max_points: usize,
    /// Timed requests per read benchmark (after the warm-up requests).
    #[arg(long, default_value_t = 20)]
    read_requests: usize,
    /// Untimed warm-up requests before each read benchmark.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Send no `times` arrays (by default every point carries a wall-clock time).
    #[arg(long)]
    no_times: bool,
    /// Where to create the per-repetition SQLite directories [default: $TMPDIR or /tmp].
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// Extra argument passed to `trainlens serve` (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Seconds to wait for GET /healthz -> 200 after spawning the server.
    #[arg(long, default_value_t = 60)]
    startup_timeout: u64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 300)]
    request_timeout: u64,
    /// Where to write the JSON results [default: <bench crate>/results/latest.json].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit non-zero when a target FAILs (always non-zero on errors).
    #[arg(long)]
    strict: bool,
}

struct Cfg {
    server_bin: PathBuf,
    server_args: Vec<String>,
    pg_url: String,
    reps: usize,
    clients: usize,
    keys: usize,
    steps: u64,
    batch: usize,
    full_points: u64,
    ds_points: u64,
    max_points: usize,
    read_requests: usize,
    warmup: usize,
    with_times: bool,
    tmp_dir: PathBuf,
    startup_timeout: Duration,
    request_timeout: Duration,
}

const READ_KEY: &str = "train/loss";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<ExitCode> {
    let args = Args::parse();
    let scale = if args.quick { 10 } else { 1 };
    if args.reps == 0 || args.clients == 0 || args.keys == 0 || args.read_requests == 0 {
        bail!("--reps, --clients, --keys and --read-requests must be at least 1");
    }
    let server_bin = std::fs::canonicalize(&args.server_bin)
        .with_context(|| format!("server binary {}", args.server_bin.display()))?;
    let tmp_dir = std::fs::canonicalize(args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir))
        .context("--tmp-dir")?;
    let cfg = Cfg {
        server_bin,
        server_args: args.server_args.clone(),
        pg_url: args.pg_url.clone(),
        reps: args.reps,
        clients: args.clients,
        keys: args.keys,
        steps: args.steps.unwrap_or(50_000 / scale),
        batch: args.batch.unwrap_or(10_000 / scale as usize).max(1),
        full_points: args.full_read_points.unwrap_or(100_000 / scale),
        ds_points: args.downsampled_read_points.unwrap_or(1_000_000 / scale),
        max_points: args.max_points,
        read_requests: args.read_requests,
        warmup: args.warmup,
        with_times: !args.no_times,
        tmp_dir,
        startup_timeout: Duration::from_secs(args.startup_timeout),
        request_timeout: Duration::from_secs(args.request_timeout),
    };
    let backends: Vec<Backend> = match args.backend {
        BackendArg::Sqlite => vec![Backend::Sqlite],
        BackendArg::Postgres => vec![Backend::Postgres],
        BackendArg::Both => vec![Backend::Sqlite, Backend::Postgres],
    };

    let machine = machine_info();
    let server_version = server_version(&cfg.server_bin).await;
    eprintln!(
        "trainlens-bench: server {} ({}); machine: nproc={}, kernel {}, {}",
        cfg.server_bin.display(),
        server_version.as_deref().unwrap_or("version unknown"),
        machine.nproc,
        machine.kernel,
        machine.cpu_model
    );

    // Pre-serialize every request body before any clock starts.
    let t = Instant::now();
    let ingest = data::build_ingest(cfg.keys, cfg.steps, cfg.batch, cfg.clients, cfg.with_times);
    let full_batches = data::build_single(READ_KEY, cfg.full_points, cfg.batch, cfg.with_times, 7);
    let ds_batches = data::build_single(READ_KEY, cfg.ds_points, cfg.batch, cfg.with_times, 8);
    let prep_secs = t.elapsed().as_secs_f64();
    let avg_body = ingest.total_bytes as f64 / ingest.requests.max(1) as f64;
    eprintln!(
        "pre-serialized {} ingest request bodies ({} points, {:.1} MB of JSON, avg {:.0} KB / request, \
         {:.1} bytes/point on the wire, times {}) in {prep_secs:.1} s; not part of any timing",
        ingest.requests,
        report::fmt_int(ingest.total_points),
        ingest.total_bytes as f64 / 1e6,
        avg_body / 1e3,
        ingest.total_bytes as f64 / ingest.total_points.max(1) as f64,
        if cfg.with_times {
            "included"
        } else {
            "omitted"
        },
    );

    let mut reports = Vec::new();
    for &b in &backends {
        let r = run_backend(&cfg, b, &ingest, &full_batches, &ds_batches).await;
        reports.push(r);
    }

    let table = report::table(&report::TableInput {
        backends: &reports,
        reps: cfg.reps,
        clients: cfg.clients,
        keys: cfg.keys,
        steps: cfg.steps,
        batch: cfg.batch,
        full_points: cfg.full_points,
        ds_points: cfg.ds_points,
        max_points: cfg.max_points,
        read_requests: cfg.read_requests,
    });

    let mut notes = vec![
        format!(
            "Request bodies are pre-serialized before the clock starts: the client's JSON \
             encoding is not measured. Each ingest request holds one key x {} steps \
             ({} requests, {:.1} MB of JSON{}); client c of {} owns keys c, c+{}, ... and \
             sends them round-robin.",
            report::fmt_int(cfg.batch as u64),
            ingest.requests,
            ingest.total_bytes as f64 / 1e6,
            if cfg.with_times {
                ", steps + values + times"
            } else {
                ", steps + values, no times"
            },
            cfg.clients,
            cfg.clients
        ),
        "Ingest points/s = points / wall time from the moment all clients start (connections \
         already open) until the last response; counts are verified afterwards via GET /series."
            .into(),
        format!(
            "Read latency = request sent -> whole response body received, one client, after {} \
             untimed warm-up requests; JSON parsing and the point-count check happen after the \
             clock stops.",
            cfg.warmup
        ),
        "Bytes/point: SQLite = every file in the data dir (db, -wal, -shm) after the server \
         exited on SIGTERM; PostgreSQL = sum of pg_total_relation_size over user tables (incl. \
         indexes and TOAST). MB = 10^6 bytes."
            .into(),
        format!(
            "Client and server share this machine's {} CPU(s).",
            machine.nproc
        ),
    ];
    if args.quick {
        notes.insert(
            0,
            "QUICK run: all sizes shrunk 10x; PASS/FAIL is only indicative.".into(),
        );
    }

    println!();
    println!(
        "## trainlens bench{}",
        if args.quick { " (--quick)" } else { "" }
    );
    println!();
    println!("{table}");
    println!(
        "Machine: nproc={}, kernel {}, CPU {}, RAM {:.1} GB. Server: {} ({}).",
        machine.nproc,
        machine.kernel,
        machine.cpu_model,
        machine.mem_total_bytes as f64 / 1e9,
        cfg.server_bin.display(),
        server_version.as_deref().unwrap_or("version unknown")
    );
    println!();
    for n in &notes {
        println!("- {n}");
    }
    for r in &reports {
        for (phase, err) in [("ingest", &r.ingest_error), ("reads", &r.reads_error)] {
            if let Some(e) = err {
                println!();
                println!("**{} {phase} ERROR**:\n```\n{e}\n```", r.backend);
            }
        }
    }

    let out = args.out.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results")
            .join("latest.json")
    });
    let json = JsonReport {
        bench: "trainlens-bench",
        generated_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        command: std::env::args().collect(),
        quick: args.quick,
        machine,
        server_bin: cfg.server_bin.display().to_string(),
        server_version,
        workload: Workload {
            clients: cfg.clients,
            keys: cfg.keys,
            steps_per_key: cfg.steps,
            points_per_request: cfg.batch,
            request_layout: format!(
                "one key x {} steps per request, keys disjoint per client",
                cfg.batch
            ),
            times_included: cfg.with_times,
            ingest_points: ingest.total_points,
            ingest_requests: ingest.requests,
            ingest_json_bytes: ingest.total_bytes,
            client_json_preserialized: true,
            reps: cfg.reps,
            full_read_points: cfg.full_points,
            downsampled_read_points: cfg.ds_points,
            max_points: cfg.max_points,
            read_requests: cfg.read_requests,
            warmup_requests: cfg.warmup,
        },
        targets: Targets {
            sqlite_ingest_points_per_sec_min: report::TARGET_SQLITE_INGEST_PPS,
            full_read_median_ms_max: report::TARGET_FULL_READ_MS,
            downsampled_read_median_ms_max: report::TARGET_DOWNSAMPLED_READ_MS,
            bytes_per_point_max: report::TARGET_BYTES_PER_POINT,
            peak_rss_bytes_max: report::TARGET_PEAK_RSS_BYTES,
        },
        backends: reports.clone(),
        notes,
        table_markdown: table,
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("results written to {}", out.display());

    let errors = reports.iter().any(BackendReport::any_error);
    let fails = reports.iter().any(BackendReport::any_fail);
    Ok(if errors || (args.strict && fails) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Serialize)]
struct JsonReport {
    bench: &'static str,
    generated_at_unix: u64,
    command: Vec<String>,
    quick: bool,
    machine: Machine,
    server_bin: String,
    server_version: Option<String>,
    workload: Workload,
    targets: Targets,
    backends: Vec<BackendReport>,
    notes: Vec<String>,
    table_markdown: String,
}

#[derive(Serialize)]
struct Workload {
    clients: usize,
    keys: usize,
    steps_per_key: u64,
    points_per_request: usize,
    request_layout: String,
    times_included: bool,
    ingest_points: u64,
    ingest_requests: usize,
    ingest_json_bytes: u64,
    client_json_preserialized: bool,
    reps: usize,
    full_read_points: u64,
    downsampled_read_points: u64,
    max_points: usize,
    read_requests: usize,
    warmup_requests: usize,
}

#[derive(Serialize)]
struct Targets {
    sqlite_ingest_points_per_sec_min: f64,
    full_read_median_ms_max: f64,
    downsampled_read_median_ms_max: f64,
    bytes_per_point_max: f64,
    peak_rss_bytes_max: u64,
}

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    kernel: String,
    cpu_model: String,
    mem_total_bytes: u64,
}

fn machine_info() -> Machine {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_total_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Machine {
        nproc,
        kernel,
        cpu_model,
        mem_total_bytes,
    }
}

async fn server_version(bin: &Path) -> Option<String> {
    let fut = tokio::process::Command::new(bin)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

// ---------------------------------------------------------------------------
// One backend: N ingest repetitions, then one read-benchmark server.

async fn run_backend(
    cfg: &Cfg,
    backend: Backend,
    ingest: &IngestData,
    full_batches: &[Batch],
    ds_batches: &[Batch],
) -> BackendReport {
    let mut rep_out = BackendReport {
        backend: backend.name().into(),
        ..Default::default()
    };
    let mut reps = Vec::new();
    for rep in 1..=cfg.reps {
        eprintln!(
            "[{}] ingest rep {rep}/{}: fresh database + server ...",
            backend.name(),
            cfg.reps
        );
        match ingest_rep(cfg, backend, ingest, rep).await {
            Ok(r) => {
                eprintln!(
                    "[{}] ingest rep {rep}: {} points in {:.2} s = {} points/s; \
                     POST p50 {:.1} ms p99 {:.1} ms; {:.2} bytes/point on disk; VmHWM {}; \
                     diagnosis up to date {:.2} s after the last POST",
                    backend.name(),
                    report::fmt_int(r.points),
                    r.wall_secs,
                    report::fmt_int(r.points_per_sec as u64),
                    r.request_latency.median_ms,
                    r.request_latency.p99_ms,
                    r.disk.bytes_per_point,
                    report::fmt_mb(r.server.vm_hwm_bytes),
                    r.diagnosis_lag_secs
                );
                reps.push(r);
            }
            Err(e) => {
                eprintln!("[{}] ingest rep {rep} FAILED: {e:#}", backend.name());
                rep_out.ingest_error = Some(format!("rep {rep}: {e:#}"));
                break;
            }
        }
    }
    if rep_out.ingest_error.is_none() {
        rep_out.ingest = Some(IngestSummary::new(reps));
    }

    eprintln!(
        "[{}] reads: fresh database + server, ingesting a {}-point and a {}-point series (untimed) ...",
        backend.name(),
        report::fmt_int(cfg.full_points),
        report::fmt_int(cfg.ds_points)
    );
    match reads(cfg, backend, full_batches, ds_batches).await {
        Ok(r) => {
            eprintln!(
                "[{}] full read ({} pts, {:.1} MB): median {:.2} ms p90 {:.2} ms; \
                 max_points={} read ({} pts returned): median {:.2} ms p90 {:.2} ms; VmHWM {}",
                backend.name(),
                report::fmt_int(r.full.returned_points as u64),
                r.full.response_bytes as f64 / 1e6,
                r.full.latency.median_ms,
                r.full.latency.p90_ms,
                cfg.max_points,
                r.downsampled.returned_points,
                r.downsampled.latency.median_ms,
                r.downsampled.latency.p90_ms,
                report::fmt_mb(r.server.vm_hwm_bytes)
            );
            rep_out.reads = Some(r);
        }
        Err(e) => {
            eprintln!("[{}] reads FAILED: {e:#}", backend.name());
            rep_out.reads_error = Some(format!("{e:#}"));
        }
    }
    rep_out.finish();
    rep_out
}

/// A fresh, empty database for one server process.
enum Store {
    Sqlite {
        dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Store {
    async fn create(cfg: &Cfg, backend: Backend) -> Result<Store> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("trainlens-bench-")
                    .tempdir_in(&cfg.tmp_dir)
                    .context("creating the SQLite temp dir")?;
                let url = format!("sqlite://{}/bench.db", dir.path().display());
                Ok(Store::Sqlite { dir, url })
            }
            Backend::Postgres => {
                let name = pg::random_db_name();
                pg::create_db(&cfg.pg_url, &name).await?;
                let url = pg::with_database(&cfg.pg_url, &name)?;
                Ok(Store::Postgres {
                    admin_url: cfg.pg_url.clone(),
                    name,
                    url,
                })
            }
        }
    }

    fn url(&self) -> &str {
        match self {
            Store::Sqlite { url, .. } | Store::Postgres { url, .. } => url,
        }
    }

    /// PostgreSQL: database size once the server has migrated it (else 0).
    async fn baseline(&self) -> Result<u64> {
        match self {
            Store::Sqlite { .. } => Ok(0),
            Store::Postgres { url, .. } => Ok(pg::sizes(url).await?.1),
        }
    }

    /// On-disk size after the server has exited.
    async fn measure(&self, points: u64, baseline: u64) -> Result<Disk> {
        let mut detail = BTreeMap::new();
        let (total, method) = match self {
            Store::Sqlite { dir, .. } => {
                let mut total = 0;
                dir_sizes(dir.path(), dir.path(), &mut detail)?;
                for v in detail.values() {
                    total += v;
                }
                (
                    total,
                    "SQLite: sum of all files in the data dir after shutdown".to_string(),
                )
            }
            Store::Postgres { url, .. } => {
                let (rel, db) = pg::sizes(url).await?;
                detail.insert("relations_total".into(), rel);
                detail.insert("database_size".into(), db);
                detail.insert("database_size_baseline".into(), baseline);
                detail.insert("database_size_delta".into(), db.saturating_sub(baseline));
                (
                    rel,
                    "PostgreSQL: sum of pg_total_relation_size over user tables".to_string(),
                )
            }
        };
        if total == 0 {
            bail!(
                "{method}: 0 bytes after ingesting {points} points; is the server storing \
                 anything in {}?",
                self.url()
            );
        }
        Ok(Disk {
            total_bytes: total,
            points,
            bytes_per_point: total as f64 / points.max(1) as f64,
            method,
            detail,
        })
    }

    async fn cleanup(self) -> Result<()> {
        match self {
            Store::Sqlite { dir, .. } => dir.close().context("removing the SQLite temp dir"),
            Store::Postgres {
                admin_url, name, ..
            } => pg::drop_db(&admin_url, &name).await,
        }
    }
}

fn dir_sizes(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let md = e.metadata()?;
        if md.is_dir() {
            dir_sizes(root, &e.path(), out)?;
        } else {
            let rel = e
                .path()
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.insert(rel, md.len());
        }
    }
    Ok(())
}

/// Run `f` against a freshly created store, always cleaning the store up.
async fn with_store<T>(
    cfg: &Cfg,
    backend: Backend,
    f: impl AsyncFnOnce(&Store) -> Result<T>,
) -> Result<T> {
    let store = Store::create(cfg, backend).await?;
    let res = f(&store).await;
    let cleanup = store.cleanup().await;
    let v = res?;
    cleanup?;
    Ok(v)
}

/// Run `phase` against a server started on `store` (given its base URL):
/// stopped afterwards (its stop report returned), or killed when `phase`
/// fails (the error then carries its state and log tail).
async fn with_server<T>(
    cfg: &Cfg,
    store: &Store,
    phase: impl AsyncFnOnce(&str) -> Result<T>,
) -> Result<(T, ServerStop)> {
    let server = Server::start(
        &cfg.server_bin,
        store.url(),
        &cfg.server_args,
        cfg.startup_timeout,
    )
    .await?;
    let v = match phase(&server.base).await {
        Ok(v) => v,
        Err(e) => return Err(fail(server, e).await),
    };
    let stop = server.stop().await?;
    Ok((v, stop))
}

/// Attach the server's state and log tail to a phase error, and kill it.
async fn fail(mut server: Server, e: anyhow::Error) -> anyhow::Error {
    let diag = server.diagnose();
    server.kill().await;
    anyhow!("{e:#}\n  ({diag})")
}

async fn ingest_rep(
    cfg: &Cfg,
    backend: Backend,
    data: &IngestData,
    rep: usize,
) -> Result<IngestRep> {
    with_store(cfg, backend, async |store: &Store| {
        let phase = async |base: &str| {
            let baseline = store.baseline().await?;
            let c = api::client(cfg.request_timeout)?;
            let run = api::create_run(&c, base, &format!("ingest-rep{rep}")).await?;
            let (wall, lat) = timed_ingest(base, &run, data, cfg.request_timeout).await?;
            let lag = api::wait_diagnosed(&c, base, &run, Duration::from_secs(120)).await?;
            let list = api::list_series(&c, base, &run).await?;
            api::verify_series(&list, &data.keys, cfg.steps)?;
            if list.len() != data.keys.len() {
                bail!(
                    "GET /series lists {} series, {} were ingested",
                    list.len(),
                    data.keys.len()
                );
            }
            Ok((baseline, wall, lat, lag))
        };
        let ((baseline, wall, lat, lag), stop) = with_server(cfg, store, phase).await?;
        let disk = store.measure(data.total_points, baseline).await?;
        Ok(IngestRep {
            rep,
            points: data.total_points,
            requests: data.requests,
            wall_secs: wall,
            points_per_sec: data.total_points as f64 / wall,
            request_latency: report::latency_stats(&lat, false),
            disk,
            server: stop,
            diagnosis_lag_secs: lag,
        })
    })
    .await
}

/// All clients start together (connections already open); returns the wall
/// time until the last response, and every request's latency in ms.
async fn timed_ingest(
    base: &str,
    run: &str,
    data: &IngestData,
    timeout: Duration,
) -> Result<(f64, Vec<f64>)> {
    let url = api::scalars_url(base, run);
    let health = format!("{base}/healthz");
    let barrier = Arc::new(tokio::sync::Barrier::new(data.per_client.len() + 1));
    let mut clients = Vec::new();
    for _ in &data.per_client {
        clients.push(api::client(timeout)?);
    }
    let mut set = JoinSet::new();
    for (batches, client) in data.per_client.iter().zip(clients) {
        let batches: Vec<Batch> = batches.clone(); // cheap: Bytes are ref-counted
        let (url, health, barrier) = (url.clone(), health.clone(), barrier.clone());
        set.spawn(async move {
            // Open the keep-alive connection before the clock starts.
            let warm = async { client.get(&health).send().await?.bytes().await }.await;
            barrier.wait().await;
            warm.context("warm-up GET /healthz")?;
            let mut lat = Vec::with_capacity(batches.len());
            for b in batches {
                let t = Instant::now();
                let accepted = api::post_scalars(&client, &url, b.body).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                if accepted != b.points as u64 {
                    bail!(
                        "POST /scalars: server accepted {accepted} points, {} were sent",
                        b.points
                    );
                }
            }
            Ok::<_, anyhow::Error>((Instant::now(), lat))
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut end = start;
    let mut lats = Vec::with_capacity(data.requests);
    while let Some(joined) = set.join_next().await {
        match joined.context("ingest client task panicked")? {
            Ok((e, l)) => {
                end = end.max(e);
                lats.extend(l);
            }
            Err(e) => {
                set.abort_all();
                return Err(e);
            }
        }
    }
    Ok(((end - start).as_secs_f64(), lats))
}

async fn reads(
    cfg: &Cfg,
    backend: Backend,
    full_batches: &[Batch],
    ds_batches: &[Batch],
) -> Result<ReadSummary> {
    with_store(cfg, backend, async |store: &Store| {
        let phase = async |base: &str| {
            let c = api::client(cfg.request_timeout)?;
            let t = Instant::now();
            let full_run = api::create_run(&c, base, "read-full").await?;
            ingest_sequential(&c, base, &full_run, full_batches).await?;
            let ds_run = api::create_run(&c, base, "read-downsampled").await?;
            ingest_sequential(&c, base, &ds_run, ds_batches).await?;
            let setup = t.elapsed().as_secs_f64();
            let key = [READ_KEY.to_string()];
            api::verify_series(
                &api::list_series(&c, base, &full_run).await?,
                &key,
                cfg.full_points,
            )?;
            api::verify_series(
                &api::list_series(&c, base, &ds_run).await?,
                &key,
                cfg.ds_points,
            )?;

            let full = read_bench(
                cfg,
                &c,
                &api::read_url(base, &full_run, READ_KEY, None),
                cfg.full_points,
                None,
            )
            .await
            .context("full read")?;
            let ds = read_bench(
                cfg,
                &c,
                &api::read_url(base, &ds_run, READ_KEY, Some(cfg.max_points)),
                cfg.ds_points,
                Some(cfg.max_points),
            )
            .await
            .context("downsampled read")?;
            Ok((setup, full, ds))
        };
        let ((setup, full, ds), stop) = with_server(cfg, store, phase).await?;
        Ok(ReadSummary {
            setup_ingest_secs: setup,
            full,
            downsampled: ds,
            server: stop,
        })
    })
    .await
}

async fn ingest_sequential(
    c: &reqwest::Client,
    base: &str,
    run: &str,
    batches: &[Batch],
) -> Result<()> {
    let url = api::scalars_url(base, run);
    for b in batches {
        let accepted = api::post_scalars(c, &url, b.body.clone()).await?;
        if accepted != b.points as u64 {
            bail!(
                "POST /scalars: server accepted {accepted} points, {} were sent",
                b.points
            );
        }
    }
    Ok(())
}

async fn read_bench(
    cfg: &Cfg,
    c: &reqwest::Client,
    url: &str,
    series_points: u64,
    max_points: Option<usize>,
) -> Result<ReadBench> {
    let mut samples = Vec::with_capacity(cfg.read_requests);
    let mut returned = 0;
    let mut bytes = 0;
    for i in 0..cfg.warmup + cfg.read_requests {
        let t = Instant::now();
        let body = api::get_body(c, url).await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        // Verified after the clock stopped.
        returned = api::verify_read(&body, READ_KEY, series_points, max_points)?;
        bytes = body.len();
        if i >= cfg.warmup {
            samples.push(ms);
        }
    }
    if let Some(m) = max_points
        && returned > m
    {
        eprintln!("  note: max_points={m} returned {returned} points (more than max_points)");
    }
    Ok(ReadBench {
        series_points,
        max_points,
        returned_points: returned,
        response_bytes: bytes,
        latency: report::latency_stats(&samples, true),
    })
}
