//! Fault injection: a full disk (SQLite's own size limit and a real small
//! tmpfs), two writers on one SQLite file (two pools, two processes), kill -9
//! under load, PostgreSQL out of reach and back (through a proxy this test
//! controls), multi-member and broken gzip bodies, and 405s.
//!
//! The rule every test checks: a 2xx answer means the data is committed; a
//! failure is rolled back completely and never poisons later requests.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use trainlens::app::{self, DEFAULT_MAX_BODY_BYTES};
use trainlens::http::AppState;
use trainlens::store::{Store, StoreOptions};

// ---------------------------------------------------------------- helpers

/// Sends a request through the router: status, headers, body (JSON when it
/// parses, else a JSON string).
async fn call(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post_json(uri: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// The value stored at `step`: deterministic, and noisy enough not to
/// compress away (so a few batches fill a small database).
fn value_of(step: u64) -> f64 {
    let h = step.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    (h % 1_000_003) as f64 / 7.0 - 50_000.0
}

/// A columnar batch of series `key`: `n` points from step `first`.
fn batch_body(key: &str, first: u64, n: u64) -> String {
    let steps: Vec<u64> = (first..first + n).collect();
    let values: Vec<f64> = steps.iter().map(|&s| value_of(s)).collect();
    json!({"series": [{"key": key, "steps": steps, "values": values}]}).to_string()
}

fn state_over(store: Arc<Store>) -> AppState {
    AppState::new(store, "http://trainlens.test", DEFAULT_MAX_BODY_BYTES)
}

async fn create_run(app: &Router, project: &str) -> String {
    let (status, _, body) = call(
        app,
        post_json("/api/v1/runs", json!({"project": project}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn post_batch(
    app: &Router,
    run: &str,
    key: &str,
    first: u64,
    n: u64,
    idem: &str,
) -> (StatusCode, HeaderMap, Value) {
    call(app, scalars_req(run, idem, batch_body(key, first, n))).await
}

/// A POST of scalar batch `body` to run `run` under idempotency key `idem`.
fn scalars_req(run: &str, idem: &str, body: String) -> Request<Body> {
    Request::post(format!("/api/v1/runs/{run}/scalars"))
        .header("content-type", "application/json")
        .header("idempotency-key", idem)
        .body(Body::from(body))
        .unwrap()
}

/// Asserts an error answer is JSON with error code `code`.
fn assert_json_error(headers: &HeaderMap, body: &Value, code: &str) {
    assert!(
        headers[axum::http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(body["error"]["code"], code, "{body}");
}

/// The `count` of series `key` in `/series` (0 when absent).
async fn series_count(app: &Router, run: &str, key: &str) -> u64 {
    let (status, _, body) = call(app, get(&format!("/api/v1/runs/{run}/series"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    count_in(&body, key)
}

/// The `count` of series `key` in a `/series` answer (0 when absent).
fn count_in(series: &Value, key: &str) -> u64 {
    series["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .map_or(0, |s| s["count"].as_u64().unwrap())
}

/// The (steps, values) of a scalar read.
fn columns(body: &Value) -> (Vec<u64>, Vec<f64>) {
    (common::steps_of(body), common::values_of(body))
}

/// The points of `key` with `from <= step <= to`, as (steps, values).
async fn read_range(
    app: &Router,
    run: &str,
    key: &str,
    from: u64,
    to: u64,
) -> (Vec<u64>, Vec<f64>) {
    let (status, _, body) = call(
        app,
        get(&format!(
            "/api/v1/runs/{run}/scalars?key={key}&from_step={from}&to_step={to}"
        )),
    )
    .await;
    if status == StatusCode::NOT_FOUND {
        return (vec![], vec![]);
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    columns(&body)
}

/// Asserts the batch of `n` points from `first` is stored whole, values exact.
async fn assert_batch_stored(app: &Router, run: &str, key: &str, first: u64, n: u64) {
    let (steps, values) = read_range(app, run, key, first, first + n - 1).await;
    assert_eq!(
        steps.len() as u64,
        n,
        "batch from step {first}: points stored"
    );
    for (s, v) in steps.iter().zip(&values) {
        assert_eq!(*v, value_of(*s), "value at step {s}");
    }
    assert_eq!(steps, (first..first + n).collect::<Vec<_>>());
}

async fn assert_batch_absent(app: &Router, run: &str, key: &str, first: u64, n: u64) {
    let (steps, _) = read_range(app, run, key, first, first + n - 1).await;
    assert!(
        steps.is_empty(),
        "a refused batch from step {first} left {} points",
        steps.len()
    );
}

const BIG: u64 = 5_000;

/// What filling a run with [`BIG`]-point batches got.
#[derive(Default, Debug)]
struct Fill {
    /// Batch numbers answered 2xx.
    acked: Vec<u64>,
    /// Batch numbers answered otherwise, with the status.
    refused: Vec<(u64, StatusCode)>,
}

impl Fill {
    /// The numbers of the refused batches.
    fn refused_batches(&self) -> Vec<u64> {
        self.refused.iter().map(|r| r.0).collect()
    }
}

/// POSTs batches `from..` (batch `i` holds steps `i*BIG..(i+1)*BIG`) until
/// `stop_after` refusals; checks each refusal is a JSON 507 and that reads
/// keep working while the database is full.
async fn fill_until_full(app: &Router, run: &str, key: &str, from: u64, stop_after: usize) -> Fill {
    let mut fill = Fill::default();
    for i in from..from + 2_000 {
        let (status, headers, body) =
            post_batch(app, run, key, i * BIG, BIG, &format!("{key}-{i}")).await;
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "batch {i}: {body}"
        );
        if status.is_success() {
            assert_eq!(body["accepted"], BIG, "{body}");
            assert_eq!(body["replayed"], false, "{body}");
            fill.acked.push(i);
            continue;
        }
        assert_eq!(
            status,
            StatusCode::INSUFFICIENT_STORAGE,
            "batch {i}: {body}"
        );
        assert_json_error(&headers, &body, "database_full");
        fill.refused.push((i, status));
        // Reads keep working while full.
        let (s, _, b) = call(app, get(&format!("/api/v1/runs/{run}/series"))).await;
        assert_eq!(s, StatusCode::OK, "series while full: {b}");
        let (s, _, b) = call(app, get(&format!("/api/v1/runs/{run}"))).await;
        assert_eq!(s, StatusCode::OK, "run while full: {b}");
        if fill.refused.len() >= stop_after {
            break;
        }
    }
    assert!(!fill.refused.is_empty(), "the database never filled up");
    fill
}

/// A new run in `project` with series `k` filled until four batches are
/// refused (see [`fill_until_full`]).
async fn new_run_filled(app: &Router, project: &str) -> (String, Fill) {
    let run = create_run(app, project).await;
    let fill = fill_until_full(app, &run, "k", 0, 4).await;
    eprintln!(
        "{project}: first refusal at batch {}, {} acknowledged",
        fill.refused[0].0,
        fill.acked.len()
    );
    (run, fill)
}

/// Every acknowledged batch is stored whole, no refused batch left a point,
/// and the series holds exactly the acknowledged points. Returns the count.
async fn check_fill(app: &Router, run: &str, key: &str, acked: &[u64], refused: &[u64]) -> u64 {
    let found = series_count(app, run, key).await;
    let acknowledged = acked.len() as u64 * BIG;
    eprintln!(
        "{key}: acknowledged {} batches = {acknowledged} points, found {found}; refused {} batches",
        acked.len(),
        refused.len()
    );
    assert_eq!(found, acknowledged, "acknowledged points == stored points");
    // Spot checks: first, middle, last acknowledged, and every refused one.
    let mut spots: Vec<u64> = Vec::new();
    if let (Some(first), Some(last)) = (acked.first(), acked.last()) {
        spots.extend([*first, acked[acked.len() / 2], *last]);
    }
    for i in spots {
        assert_batch_stored(app, run, key, i * BIG, BIG).await;
    }
    for &i in refused {
        assert_batch_absent(app, run, key, i * BIG, BIG).await;
    }
    found
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A store on `url` (that SQLite lets grow to `max_pages` pages, if given),
/// and a router over it.
async fn store_and_app(url: &str, max_pages: Option<u64>) -> (Arc<Store>, Router) {
    let opts = StoreOptions {
        sqlite_max_page_count: max_pages,
        ..Default::default()
    };
    let store = Arc::new(Store::connect_with(url, &opts).await.unwrap());
    let app = app::router(state_over(store.clone()));
    (store, app)
}

/// POSTs batches `batches` of series `k` (batch `i` under key `k-{i}`),
/// asserts each is answered 200 (`when` says when, in the message) and
/// appends it to `acked`.
async fn post_accepted(
    app: &Router,
    run: &str,
    batches: std::ops::Range<u64>,
    acked: &mut Vec<u64>,
    when: &str,
) {
    for i in batches {
        let (status, _, body) = post_batch(app, run, "k", i * BIG, BIG, &format!("k-{i}")).await;
        assert_eq!(status, StatusCode::OK, "{when}, batch {i}: {body}");
        acked.push(i);
    }
}

/// Asserts SQLite's `PRAGMA integrity_check` finds the store's file sound.
async fn assert_integrity(store: &Store) {
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(ok, "ok");
}

// ------------------------------------------------ 1. SQLite's size limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_limit_full_is_507_nothing_half_written_and_reopening_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("full.db"));
    let (store, app) = store_and_app(&url, Some(400)).await;
    let (run, fill) = new_run_filled(&app, "full").await;
    let refused = fill.refused_batches();
    eprintln!("page limit 400: first refusal with {}", fill.refused[0].1);
    check_fill(&app, &run, "k", &fill.acked, &refused).await;
    // Creating a run is refused the same way, not with a 500.
    let (status, _, body) = call(&app, post_json("/api/v1/runs", "{}".into())).await;
    eprintln!("run creation while full: {status}");
    assert!(
        status == StatusCode::CREATED || status == StatusCode::INSUFFICIENT_STORAGE,
        "{status} {body}"
    );

    // "Free space": the same file without the limit.
    store.close().await;
    drop(app);
    let (store, app) = store_and_app(&url, None).await;
    // A refused batch's idempotency key was rolled back with it: re-sending
    // it writes the batch now.
    let retry = refused[0];
    let (status, _, body) =
        post_batch(&app, &run, "k", retry * BIG, BIG, &format!("k-{retry}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["replayed"], false,
        "the refused key was not kept: {body}"
    );
    let mut acked = fill.acked.clone();
    acked.push(retry);
    let next = refused.last().unwrap() + 1;
    post_accepted(&app, &run, next..next + 3, &mut acked, "after reopening").await;
    let other = create_run(&app, "after").await;
    assert_ne!(other, run);
    let still_refused: Vec<u64> = refused[1..].to_vec();
    let found = check_fill(&app, &run, "k", &acked, &still_refused).await;
    eprintln!("after reopening without the limit: {found} points, run creation works");
    assert_integrity(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_limit_full_then_space_freed_resumes_on_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("full.db"));
    let (store, app) = store_and_app(&url, Some(400)).await;
    let filler = create_run(&app, "filler").await;
    let run = create_run(&app, "kept").await;
    // Run `kept` gets two batches, the filler the rest of the space.
    let mut acked = Vec::new();
    post_accepted(&app, &run, 0..2, &mut acked, "before filling").await;
    let fill = fill_until_full(&app, &filler, "f", 0, 2).await;
    eprintln!(
        "filler: {} batches acknowledged before the first 507",
        fill.acked.len()
    );
    let (status, _, body) = post_batch(&app, &run, "k", 2 * BIG, BIG, "k-2").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"]["code"], "database_full");

    // Space returns: the filler run goes (its pages go to the free list,
    // which SQLite reuses without a VACUUM).
    let deleted = sqlx::query("DELETE FROM runs WHERE id = $1")
        .bind(&filler)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    let started = Instant::now();
    // `acked` holds batches 0 and 1, sent before the filler.
    post_accepted(&app, &run, 2..6, &mut acked, "same store, space freed").await;
    eprintln!(
        "same store after freeing space: 4 batches accepted in {:?}",
        started.elapsed()
    );
    let again = create_run(&app, "after").await;
    assert!(!again.is_empty());
    check_fill(&app, &run, "k", &acked, &[]).await;
    store.close().await;
}

// ------------------------------------------------ 2. a real full disk

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct TmpfsMount {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TmpfsMount {
    fn mount(size: &str) -> Result<TmpfsMount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TmpfsMount { path, _dir: dir })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let out = Command::new("umount").arg(&self.path).output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            // Busy (a file still open): detach it lazily instead.
            let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_full_disk_is_507_and_writes_resume_when_space_returns() {
    let mount = match TmpfsMount::mount("8m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIP real_full_disk: {why}");
            return;
        }
    };
    // A filler file takes most of the 8 MiB, so the database fills soon.
    let filler = mount.path.join("filler");
    std::fs::write(&filler, vec![0xA5u8; 5 * 1024 * 1024]).unwrap();
    let url = sqlite_url(&mount.path.join("disk.db"));
    let (store, app) = store_and_app(&url, None).await;
    let (run, fill) = new_run_filled(&app, "disk").await;
    let refused = fill.refused_batches();
    let (status, _, _) = call(&app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK, "the server stays up");
    check_fill(&app, &run, "k", &fill.acked, &refused).await;

    // Space returns: the same store takes writes again.
    std::fs::remove_file(&filler).unwrap();
    let mut acked = fill.acked.clone();
    let next = refused.last().unwrap() + 1;
    let started = Instant::now();
    post_accepted(
        &app,
        &run,
        next..next + 4,
        &mut acked,
        "after freeing space",
    )
    .await;
    eprintln!(
        "tmpfs: filler deleted, 4 batches accepted by the same store in {:?}",
        started.elapsed()
    );
    create_run(&app, "after").await;
    check_fill(&app, &run, "k", &acked, &refused).await;
    assert_integrity(&store).await;
    store.close().await;
    drop(mount);
}

// ------------------------------------------------ 3. two writers

const SMALL: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_sqlite_file_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("shared.db"));
    let a = Arc::new(Store::connect(&url).await.unwrap());
    let b = Arc::new(Store::connect(&url).await.unwrap());
    let apps = [
        app::router(state_over(a.clone())),
        app::router(state_over(b.clone())),
    ];
    let run = create_run(&apps[0], "shared").await;
    const TASKS: u64 = 4; // per store
    const BATCHES: u64 = 200;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (s, app) in apps.iter().enumerate() {
        for t in 0..TASKS {
            let app = app.clone();
            let run = run.clone();
            let lane = s as u64 * TASKS + t;
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for i in 0..BATCHES {
                    // Lanes interleave within chunks: every write merges.
                    let first = (i * 2 * TASKS + lane) * SMALL;
                    let (status, _, body) =
                        post_batch(&app, &run, "k", first, SMALL, &format!("{lane}-{i}")).await;
                    if status != StatusCode::OK {
                        failures.push(format!("{status} {body}"));
                    }
                }
                failures
            }));
        }
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    let total = 2 * TASKS * BATCHES * SMALL;
    let found = series_count(&apps[1], &run, "k").await;
    let (steps, values) = read_range(&apps[0], &run, "k", 0, u64::MAX / 2).await;
    eprintln!(
        "two stores, {} tasks x {BATCHES} batches in {:?}: {} failures, acknowledged {total} points, \
         series count {found}, read back {}",
        2 * TASKS,
        started.elapsed(),
        failures.len(),
        steps.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(found, total);
    assert_eq!(steps, (0..total).collect::<Vec<_>>());
    assert!(steps.iter().zip(&values).all(|(s, v)| *v == value_of(*s)));
    a.close().await;
    b.close().await;
}

/// A child process that is killed if the test ends before it stops it.
struct Child(Option<std::process::Child>);

impl Child {
    fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().unwrap(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `trainlens serve` on a free port; returns it with its base URL.
async fn spawn_server(db_url: &str, client: &reqwest::Client) -> (Child, String) {
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_trainlens"))
        .env("DATABASE_URL", db_url)
        .env_remove("TRAINLENS_SERVER")
        .env("RUST_LOG", "error")
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child = Child(Some(child));
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} did not become healthy");
}

async fn remote_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn remote_create_run(client: &reqwest::Client, base: &str) -> String {
    let (status, body) = remote_json(
        client
            .post(format!("{base}/api/v1/runs"))
            .header("content-type", "application/json")
            .body(r#"{"project":"procs"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn remote_post_batch(
    client: &reqwest::Client,
    base: &str,
    run: &str,
    first: u64,
    n: u64,
    idem: &str,
) -> reqwest::Result<(u16, Value)> {
    let resp = client
        .post(format!("{base}/api/v1/runs/{run}/scalars"))
        .header("content-type", "application/json")
        .header("idempotency-key", idem)
        .body(batch_body("k", first, n))
        .send()
        .await?;
    Ok(remote_json(resp).await)
}

async fn remote_get(client: &reqwest::Client, url: String) -> (u16, Value) {
    remote_json(client.get(url).send().await.unwrap()).await
}

/// (series count, all steps) of series `k` as a server reports them.
async fn remote_points(
    client: &reqwest::Client,
    base: &str,
    run: &str,
) -> (u64, Vec<u64>, Vec<f64>) {
    let (status, series) = remote_get(client, format!("{base}/api/v1/runs/{run}/series")).await;
    assert_eq!(status, 200, "{series}");
    let count = count_in(&series, "k");
    let (status, body) =
        remote_get(client, format!("{base}/api/v1/runs/{run}/scalars?key=k")).await;
    if status == 404 {
        return (count, vec![], vec![]);
    }
    assert_eq!(status, 200, "{body}");
    let (steps, values) = columns(&body);
    (count, steps, values)
}

/// Awaits `tasks` and concatenates the two lists each returned.
async fn gather<A, B>(tasks: Vec<tokio::task::JoinHandle<(A, B)>>) -> (Vec<A::Item>, Vec<B::Item>)
where
    A: IntoIterator,
    B: IntoIterator,
{
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for t in tasks {
        let (x, y) = t.await.unwrap();
        xs.extend(x);
        ys.extend(y);
    }
    (xs, ys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_sqlite_file_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = sqlite_url(&dir.path().join("procs.db"));
    let client = trainlens::http_client().build().unwrap();
    // The first creates the schema; the second finds it.
    let (mut one, base1) = spawn_server(&db_url, &client).await;
    let (mut two, base2) = spawn_server(&db_url, &client).await;
    let run = remote_create_run(&client, &base1).await;
    const CLIENTS: u64 = 4;
    const BATCHES: u64 = 150;
    const N: u64 = 50;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        let base = if c % 2 == 0 {
            base1.clone()
        } else {
            base2.clone()
        };
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut bad = Vec::new();
            for i in 0..BATCHES {
                let first = (i * CLIENTS + c) * N;
                match remote_post_batch(&client, &base, &run, first, N, &format!("{c}-{i}")).await {
                    Ok((200, _)) => acked.push(first),
                    Ok((status, body)) => bad.push(format!("{status} {body}")),
                    Err(e) => bad.push(format!("transport: {e}")),
                }
            }
            (acked, bad)
        }));
    }
    let (acked, bad) = gather(tasks).await;
    let elapsed = started.elapsed();
    let (count, steps, values) = remote_points(&client, &base2, &run).await;
    let want: BTreeSet<u64> = acked.iter().flat_map(|&f| f..f + N).collect();
    eprintln!(
        "two processes, {CLIENTS} clients x {BATCHES} batches in {elapsed:?}: {} acknowledged = {} points, \
         {} failures, series count {count}, read back {}",
        acked.len(),
        want.len(),
        bad.len(),
        steps.len()
    );
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(count, want.len() as u64);
    assert_eq!(steps, want.into_iter().collect::<Vec<_>>());
    assert!(steps.iter().zip(&values).all(|(s, v)| *v == value_of(*s)));
    one.kill9();
    two.kill9();
}

// ------------------------------------------------ 4. kill -9 under load

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_keeps_every_acknowledged_batch_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("killed.db");
    let db_url = sqlite_url(&db_path);
    let client = trainlens::http_client()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (mut server, base) = spawn_server(&db_url, &client).await;
    let run = remote_create_run(&client, &base).await;
    const CLIENTS: u64 = 4;
    const N: u64 = 500;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        let base = base.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            // (first step, key) acknowledged; the one in flight at the kill.
            let mut acked = Vec::new();
            let mut in_flight = None;
            for i in 0u64.. {
                let first = (i * CLIENTS + c) * N;
                let key = format!("c{c}-{i}");
                match remote_post_batch(&client, &base, &run, first, N, &key).await {
                    Ok((200, _)) => acked.push((first, key)),
                    Ok((status, body)) => panic!("client {c} batch {i}: {status} {body}"),
                    Err(_) => {
                        in_flight = Some(first);
                        break;
                    }
                }
            }
            (acked, in_flight)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.kill9();
    let (acked, in_flight) = gather(tasks).await;

    let (mut server, base) = spawn_server(&db_url, &client).await;
    let (count, steps, values) = remote_points(&client, &base, &run).await;
    let stored: BTreeSet<u64> = steps.iter().copied().collect();
    assert_eq!(stored.len(), steps.len(), "no step twice");
    assert_eq!(
        count,
        steps.len() as u64,
        "the series count matches its points"
    );
    assert!(steps.iter().zip(&values).all(|(s, v)| *v == value_of(*s)));
    for (first, key) in &acked {
        assert!(
            (*first..first + N).all(|s| stored.contains(&s)),
            "acknowledged batch {key} is stored whole"
        );
    }
    // The batches in flight at the kill: all or nothing.
    let mut landed = 0;
    for first in &in_flight {
        let present = (*first..first + N).filter(|s| stored.contains(s)).count() as u64;
        assert!(
            present == 0 || present == N,
            "batch from {first}: {present} of {N} points"
        );
        landed += usize::from(present == N);
    }
    let expected = (acked.len() + landed) as u64 * N;
    eprintln!(
        "kill -9 after 2 s: {} acknowledged = {} points, {} in flight ({landed} landed whole), \
         stored {count} points (expected {expected})",
        acked.len(),
        acked.len() as u64 * N,
        in_flight.len()
    );
    assert_eq!(
        count, expected,
        "nothing beyond acknowledged and whole in-flight batches"
    );
    // Exactly once: re-sending an acknowledged batch replays it.
    for (first, key) in acked.iter().rev().take(8) {
        let (status, body) = remote_post_batch(&client, &base, &run, *first, N, key)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["replayed"], true, "{key}: {body}");
        assert_eq!(body["accepted"], N);
    }
    let (after, _, _) = remote_points(&client, &base, &run).await;
    assert_eq!(after, count);
    server.kill9();

    let store = Store::connect(&db_url).await.unwrap();
    assert_integrity(&store).await;
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM idempotency_keys WHERE run_id = $1")
            .bind(&run)
            .fetch_all(store.pool())
            .await
            .unwrap();
    let keys: BTreeSet<String> = keys.into_iter().collect();
    for (_, key) in &acked {
        assert!(keys.contains(key), "idempotency key {key} kept");
    }
    eprintln!(
        "integrity_check: ok; {} idempotency keys stored",
        keys.len()
    );
    store.close().await;
}

// ------------------------------------------------ 5. PostgreSQL out of reach

/// The forwarding tasks of a [`Proxy`]'s live connections.
type Conns = Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

/// A TCP forwarder on a fixed local port that can be switched off (listener
/// dropped, live connections cut) and on again.
struct Proxy {
    port: u16,
    upstream: String,
    running: Option<(tokio::task::JoinHandle<()>, Conns)>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let mut p = Proxy {
            port: 0,
            upstream: upstream.to_string(),
            running: None,
        };
        p.on().await;
        p
    }

    async fn on(&mut self) {
        assert!(self.running.is_none());
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding the proxy on port {}: {e}", self.port),
            }
        };
        self.port = listener.local_addr().unwrap().port();
        let conns: Conns = Default::default();
        let upstream = self.upstream.clone();
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                list.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                }));
            }
        });
        self.running = Some((accept, conns));
    }

    async fn off(&mut self) {
        if let Some((accept, conns)) = self.running.take() {
            accept.abort();
            let _ = accept.await;
            for c in conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_out_of_reach_is_503_with_retry_after_and_recovers() {
    use sqlx::migrate::MigrateDatabase;
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("SKIP postgres_out_of_reach: TEST_DATABASE_URL unset");
        return;
    };
    sqlx::any::install_default_drivers();
    let name = format!("trainlens_test_{}", uuid::Uuid::new_v4().simple());
    let mut direct = reqwest::Url::parse(&base).expect("TEST_DATABASE_URL parses");
    direct.set_path(&format!("/{name}"));
    let upstream = format!(
        "{}:{}",
        direct.host_str().unwrap_or("127.0.0.1"),
        direct.port().unwrap_or(5432)
    );
    sqlx::Any::create_database(direct.as_str()).await.unwrap();

    let mut proxy = Proxy::start(&upstream).await;
    let mut via = direct.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port)).unwrap();
    let opts = StoreOptions {
        acquire_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let store = Arc::new(Store::connect_with(via.as_str(), &opts).await.unwrap());
    let described = trainlens::store::describe_database_url(via.as_str());
    let app = app::router(state_over(store.clone()).with_database_name(&described));
    let run = create_run(&app, "pg").await;
    let (status, _, body) = post_batch(&app, &run, "k", 0, 100, "b-0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);

    proxy.off().await;
    let started = Instant::now();
    let (status, headers, body) = post_batch(&app, &run, "k", 100, 100, "b-1").await;
    let latency = started.elapsed();
    eprintln!("PostgreSQL cut off: POST answered {status} in {latency:?}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(
        latency < Duration::from_secs(4),
        "503 within ~3 s: {latency:?}"
    );
    let (status, _, _) = call(&app, get("/healthz")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "/healthz does not depend on the database"
    );
    let started = Instant::now();
    let (status, headers, body) = call(&app, get("/readyz")).await;
    eprintln!(
        "/readyz while cut off: {status} in {:?}: {body}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&described), "{message} names {described}");
    assert!(
        !message.contains("postgres@"),
        "no user or password: {message}"
    );

    proxy.on().await;
    let back = Instant::now();
    let mut attempts = 0;
    let recovered = loop {
        attempts += 1;
        let (status, _, body) = post_batch(&app, &run, "k", 200, 100, "b-2").await;
        if status == StatusCode::OK {
            break back.elapsed();
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "no recovery: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("PostgreSQL back: first write accepted after {recovered:?} ({attempts} attempts)");
    let (status, _, _) = call(&app, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    // The refused batch is absent; the others are whole; the refused key was
    // not kept, so re-sending it writes it.
    assert_eq!(series_count(&app, &run, "k").await, 200);
    assert_batch_absent(&app, &run, "k", 100, 100).await;
    let (status, _, body) = post_batch(&app, &run, "k", 100, 100, "b-1").await;
    assert_eq!(
        (status, body["replayed"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert_batch_stored(&app, &run, "k", 0, 300).await;
    eprintln!(
        "PostgreSQL: 300 points acknowledged, {} stored",
        series_count(&app, &run, "k").await
    );

    store.close().await;
    proxy.off().await;
    sqlx::Any::force_drop_database(direct.as_str())
        .await
        .unwrap();
}

// ------------------------------------------------ 6. gzip bodies

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn scalar_lines(from: u64, to: u64) -> String {
    (from..to)
        .map(|s| {
            format!(
                "{}\n",
                json!({"type": "scalar", "step": s, "key": "loss", "value": value_of(s)})
            )
        })
        .collect()
}

fn import_req(body: Vec<u8>, encoding: &str) -> Request<Body> {
    Request::post("/api/v1/import")
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", encoding)
        .body(Body::from(body))
        .unwrap()
}

async fn runs_of(app: &Router, project: &str) -> usize {
    let (status, _, body) = call(app, get(&format!("/api/v1/runs?project={project}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["runs"].as_array().unwrap().len()
}

#[tokio::test]
async fn multi_member_gzip_is_read_whole_and_broken_bodies_store_nothing() {
    let db = common::TestDb::sqlite().await;
    let app = db.app();
    let first = format!(
        "{}\n{}",
        json!({"type": "run", "name": "two-members", "project": "gz"}),
        scalar_lines(0, 300)
    );
    let mut body = gzip(first.as_bytes());
    body.extend(gzip(scalar_lines(300, 700).as_bytes()));
    let (status, _, run) = call(&app, import_req(body, "gzip")).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["id"].as_str().unwrap();
    let (status, _, exported) = call(&app, get(&format!("/api/v1/runs/{id}/export"))).await;
    assert_eq!(status, StatusCode::OK);
    let exported = exported.as_str().unwrap();
    let scalars = exported
        .lines()
        .filter(|l| l.contains("\"type\":\"scalar\""))
        .count();
    eprintln!("two gzip members: sent 700 scalars, exported {scalars}");
    assert_eq!(scalars, 700, "records of the second member are stored");
    assert_eq!(series_count(&app, id, "loss").await, 700);
    assert_batch_stored(&app, id, "loss", 0, 700).await;

    // Truncated: 400, nothing stored.
    let whole = gzip(
        format!(
            "{}\n{}",
            json!({"type": "run", "name": "cut", "project": "gz-cut"}),
            scalar_lines(0, 2_000)
        )
        .as_bytes(),
    );
    let cut = whole[..whole.len() * 2 / 3].to_vec();
    let (status, _, body) = call(&app, import_req(cut, "gzip")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_gzip", "{body}");
    assert_eq!(
        runs_of(&app, "gz-cut").await,
        0,
        "a truncated body stores nothing"
    );
    // A whole first member followed by a truncated second one: also nothing.
    let mut half = gzip(
        format!(
            "{}\n{}",
            json!({"type": "run", "name": "cut2", "project": "gz-cut2"}),
            scalar_lines(0, 10)
        )
        .as_bytes(),
    );
    let second = gzip(scalar_lines(10, 2_000).as_bytes());
    half.extend(&second[..second.len() / 2]);
    let (status, _, body) = call(&app, import_req(half, "gzip")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        runs_of(&app, "gz-cut2").await,
        0,
        "a truncated second member stores nothing"
    );

    // Brotli: 415 with a JSON error.
    let line = format!(
        "{}\n",
        json!({"type": "run", "name": "br", "project": "gz-br"})
    );
    let (status, headers, body) = call(&app, import_req(line.into_bytes(), "br")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_json_error(&headers, &body, "unsupported_media_type");
    assert_eq!(body["error"]["field"], "Content-Encoding", "{body}");
    assert_eq!(runs_of(&app, "gz-br").await, 0);
    db.cleanup().await;
}

// ------------------------------------------------ 7. 405

#[tokio::test]
async fn method_not_allowed_is_a_json_error() {
    let db = common::TestDb::sqlite().await;
    let app = db.app();
    for (method, uri) in [
        ("DELETE", "/api/v1/runs"),
        ("PUT", "/api/v1/import"),
        ("POST", "/healthz"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = call(&app, req).await;
        eprintln!("{method} {uri}: {status} {body}");
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_json_error(&headers, &body, "method_not_allowed");
        assert!(
            headers.contains_key("allow"),
            "405 says what is allowed: {headers:?}"
        );
    }
    db.cleanup().await;
}

// ------------------------------------------------ 8. cancelled requests

/// A batch of [`WIDE_SERIES`] series of `n` points each from step `first`.
fn wide_body(first: u64, n: u64) -> String {
    let series: Vec<Value> = (0..WIDE_SERIES)
        .map(|k| {
            let steps: Vec<u64> = (first..first + n).collect();
            let values: Vec<f64> = steps.iter().map(|&s| value_of(s)).collect();
            json!({"key": format!("s{k}"), "steps": steps, "values": values})
        })
        .collect();
    json!({ "series": series }).to_string()
}

const WIDE_SERIES: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_mid_write_rolls_back_and_poisons_nothing() {
    let db = common::TestDb::sqlite().await;
    let app = db.app();
    let run = create_run(&app, "cancel").await;
    const N: u64 = 2_000;
    let send = |i: u64| scalars_req(&run, &format!("w-{i}"), wide_body(i * N, N));
    let started = Instant::now();
    let (status, _, body) = call(&app, send(0)).await;
    let whole = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (mut cancelled, mut landed, mut absent) = (0, 0, 0);
    let mut acked = vec![0u64];
    for i in 1..=24u64 {
        // Cancel after a growing share of a whole request's time: before,
        // inside and after the write transaction.
        let after = whole * i as u32 / 20;
        let done = tokio::time::timeout(after, call(&app, send(i))).await;
        match done {
            Ok((status, _, body)) => {
                assert_eq!(status, StatusCode::OK, "{body}");
                acked.push(i);
            }
            Err(_) => cancelled += 1,
        }
        // The next write is not blocked or refused by what was cut off.
        let probe = Instant::now();
        let (status, _, body) =
            post_batch(&app, &run, "probe", i * 10, 10, &format!("p-{i}")).await;
        assert_eq!(status, StatusCode::OK, "after cancelling batch {i}: {body}");
        assert!(
            probe.elapsed() < Duration::from_secs(2),
            "{:?}",
            probe.elapsed()
        );
        // All or nothing, over every series of the batch.
        let mut present = Vec::new();
        for k in 0..WIDE_SERIES {
            let (steps, _) = read_range(&app, &run, &format!("s{k}"), i * N, i * N + N - 1).await;
            present.push(steps.len() as u64);
        }
        assert!(
            present.iter().all(|&p| p == N) || present.iter().all(|&p| p == 0),
            "batch {i}: {present:?}"
        );
        if present[0] == N {
            landed += 1;
        } else {
            assert!(!acked.contains(&i), "acknowledged batch {i} missing");
            absent += 1;
        }
    }
    eprintln!(
        "cancelling at 5%..120% of {whole:?}: {cancelled} cancelled, {} acknowledged, \
         {landed} stored whole, {absent} stored not at all",
        acked.len() - 1
    );
    // A cut-off batch that did not land left no idempotency key: re-sending
    // it writes it.
    for i in 1..=24u64 {
        let (status, _, body) = call(&app, send(i)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for k in 0..WIDE_SERIES {
        assert_eq!(series_count(&app, &run, &format!("s{k}")).await, 25 * N);
    }
    assert_eq!(series_count(&app, &run, "probe").await, 240);
    db.cleanup().await;
}
