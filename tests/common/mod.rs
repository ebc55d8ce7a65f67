//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sqlx::migrate::MigrateDatabase;
use tower::ServiceExt;
use trainlens::app::{self, DEFAULT_MAX_BODY_BYTES};
use trainlens::http::AppState;
use trainlens::store::Store;

/// A store on a fresh database, removed by [`TestDb::cleanup`].
pub struct TestDb {
    pub store: Arc<Store>,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_url: Option<String>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = Arc::new(Store::connect(&url).await.unwrap());
        TestDb {
            store,
            url,
            _dir: Some(dir),
            pg_url: None,
        }
    }

    /// A fresh database on the server of `TEST_DATABASE_URL`, or `None`
    /// when it is unset (an error in CI, where it must be set).
    pub async fn postgres() -> Option<TestDb> {
        let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set TEST_DATABASE_URL"
            );
            eprintln!("TEST_DATABASE_URL unset: skipping the PostgreSQL variant");
            return None;
        };
        sqlx::any::install_default_drivers();
        let name = format!("trainlens_test_{}", uuid::Uuid::new_v4().simple());
        let (prefix, _) = base
            .rsplit_once('/')
            .expect("TEST_DATABASE_URL ends in /DBNAME");
        let url = format!("{prefix}/{name}");
        sqlx::Any::create_database(&url).await.unwrap();
        let store = Arc::new(Store::connect(&url).await.unwrap());
        Some(TestDb {
            store,
            url: url.clone(),
            _dir: None,
            pg_url: Some(url),
        })
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some(url) = self.pg_url {
            sqlx::Any::force_drop_database(&url).await.unwrap();
        }
    }

    /// Creates the run `name` in `project` with `config`; its id.
    pub async fn create_run(
        &self,
        project: &str,
        name: &str,
        config: serde_json::Value,
    ) -> uuid::Uuid {
        let run = new_run(project, name, config);
        self.store.create_run(&run).await.unwrap().id
    }

    pub fn state(&self) -> AppState {
        AppState::new(
            self.store.clone(),
            "http://trainlens.test",
            DEFAULT_MAX_BODY_BYTES,
        )
    }

    pub fn app(&self) -> Router {
        app::router(self.state())
    }
}

/// Runs a test body against SQLite and, when configured, PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($db:ident: &TestDb) $body:block)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = TestDb::postgres().await else { return };
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        $(async fn $name($db: &TestDb) $body)*
    };
}

/// Sends a request through the router; returns the status and the body
/// (JSON when it parses, else a JSON string).
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, body)
}

/// Status, headers and body of a GET.
pub async fn fetch_bytes(app: &Router, uri: &str) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(get(uri)).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

/// Status, headers and body text of a GET.
pub async fn fetch(app: &Router, uri: &str) -> (u16, axum::http::HeaderMap, String) {
    let (status, headers, bytes) = fetch_bytes(app, uri).await;
    (status, headers, String::from_utf8(bytes).unwrap())
}

/// The file at `uri`, checked to be a download named `...-{name}` of the
/// type its extension says.
pub async fn download_bytes(app: &Router, uri: &str, name: &str) -> Vec<u8> {
    let (status, headers, body) = fetch_bytes(app, uri).await;
    assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&body));
    let content_type = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("svg") => "image/svg+xml; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("png") => "image/png",
        other => panic!("no download type for {other:?}"),
    };
    assert_eq!(headers["content-type"], content_type, "{uri}");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\""),
        "{disposition}"
    );
    assert!(
        disposition.ends_with(&format!("-{name}\"")),
        "{disposition}"
    );
    body
}

/// [`download_bytes`] of a text file.
pub async fn download(app: &Router, uri: &str, name: &str) -> String {
    String::from_utf8(download_bytes(app, uri, name).await).unwrap()
}

/// Strings users send that must reach a page escaped.
pub const SCRIPT: &str = "<script>alert(1)</script>";
pub const ONLOAD: &str = "\"><svg onload=alert(1)>";

/// A CSS selector (the tests' own, so it parses).
pub fn sel(css: &str) -> scraper::Selector {
    scraper::Selector::parse(css).unwrap()
}

/// The trimmed text of each element matching `css`.
pub fn texts(doc: &scraper::Html, css: &str) -> Vec<String> {
    doc.select(&sel(css))
        .map(|e| e.text().collect::<String>().trim().to_string())
        .collect()
}

/// The value of `attr` on each element matching `css` that has it.
pub fn attrs(doc: &scraper::Html, css: &str, attr: &str) -> Vec<String> {
    doc.select(&sel(css))
        .filter_map(|e| e.value().attr(attr).map(str::to_string))
        .collect()
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn post(uri: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

pub fn post_json(uri: &str, body: &serde_json::Value) -> Request<Body> {
    post(uri, "application/json", body.to_string())
}

/// Posts `values` (numbers, or strings such as `"NaN"`) of `train/loss` at
/// `steps` to `run`, which must take them.
pub async fn post_loss(app: &Router, run: &str, steps: &[u64], values: impl serde::Serialize) {
    let (status, body) = send(
        app,
        post_json(
            &format!("/api/v1/runs/{run}/scalars"),
            &serde_json::json!({"key": "train/loss", "steps": steps, "values": values}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The recorded training runs in `../shared/fixtures/training-runs`.
pub fn fixtures_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("TRAINLENS_FIXTURES").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/training-runs"
        ))),
        Some(PathBuf::from("/work/shared/fixtures/training-runs")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("labels.json").is_file())
        .expect("fixtures not found: set TRAINLENS_FIXTURES to the training-runs folder")
}

pub fn fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the recorded runs, found {}",
        files.len()
    );
    files
}

/// What a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: axum::http::HeaderMap,
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
}

/// A webhook receiver on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub hits: Arc<std::sync::Mutex<Vec<Hit>>>,
    /// Requests to answer 500 before accepting.
    pub fail_first: Arc<std::sync::atomic::AtomicUsize>,
    /// While false, every request gets 503.
    pub up: Arc<std::sync::atomic::AtomicBool>,
    /// When set, answer 302 to this location.
    pub redirect_to: Arc<std::sync::Mutex<Option<String>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            hits: Default::default(),
            fail_first: Default::default(),
            up: Arc::new(true.into()),
            redirect_to: Default::default(),
        };
        let state = r.clone();
        let app = Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    let redirect = state.redirect_to.lock().unwrap().clone();
                    let status = if let Some(loc) = &redirect {
                        let _ = loc;
                        302
                    } else if !state.up.load(Ordering::SeqCst) {
                        503
                    } else if state
                        .fail_first
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        500
                    } else {
                        200
                    };
                    state.hits.lock().unwrap().push(Hit {
                        headers,
                        body,
                        status,
                    });
                    let mut resp = axum::response::Response::new(axum::body::Body::empty());
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Some(loc) = redirect {
                        resp.headers_mut().insert("location", loc.parse().unwrap());
                    }
                    resp
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.status == 200)
            .collect()
    }
}

/// Polls `check` every 50 ms until it is true or `secs` pass.
pub async fn eventually(secs: f64, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    check().await
}

/// A run to create: `project`/`name`, the given config, no tags or key.
pub fn new_run(project: &str, name: &str, config: serde_json::Value) -> trainlens::model::NewRun {
    trainlens::model::NewRun {
        project: project.into(),
        name: name.into(),
        config,
        tags: vec![],
        run_key: None,
    }
}

/// Points at `steps` with values `f(step)` and no times.
pub fn points(
    steps: impl IntoIterator<Item = u64>,
    f: impl Fn(u64) -> f64,
) -> Vec<trainlens::model::Point> {
    steps
        .into_iter()
        .map(|s| trainlens::model::Point {
            step: s,
            value: f(s),
            time: None,
        })
        .collect()
}

/// A runner that diagnoses as soon as data is there, linking to `public_url`.
pub fn eager_runner(store: &Arc<Store>, public_url: &str) -> trainlens::runner::Runner {
    use trainlens::runner::{Runner, RunnerConfig};
    let mut cfg = RunnerConfig::new(public_url);
    cfg.quiet = std::time::Duration::ZERO;
    cfg.min_wait = std::time::Duration::ZERO;
    cfg.max_wait = std::time::Duration::ZERO;
    Runner::new(store.clone(), cfg, Arc::new(tokio::sync::Notify::new()))
}

/// The `steps` column of a scalar read.
pub fn steps_of(columns: &serde_json::Value) -> Vec<u64> {
    columns["steps"]
        .as_array()
        .expect("a steps column")
        .iter()
        .map(|s| s.as_u64().expect("steps are integers"))
        .collect()
}

/// The `values` column of a scalar read, finite values only.
pub fn values_of(columns: &serde_json::Value) -> Vec<f64> {
    columns["values"]
        .as_array()
        .expect("a values column")
        .iter()
        .map(|v| v.as_f64().expect("finite values"))
        .collect()
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shutdown signal [`LiveServer::spawn`] hands its server.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A server task on a port of 127.0.0.1, stopped gracefully by
/// [`LiveServer::stop`].
pub struct LiveServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LiveServer {
    /// The API of `state` alone (`app::serve`).
    pub async fn serve(state: AppState) -> LiveServer {
        Self::spawn(|listener, _, shutdown| app::serve(listener, state, shutdown)).await
    }

    /// The API of `state` with its background tasks, the runner eager
    /// (diagnosing 200 ms after a run goes quiet, at most 500 ms after its
    /// data), as the client tests that wait for a diagnosis need.
    pub async fn with_eager_runner(state: AppState) -> LiveServer {
        Self::spawn(|listener, base, shutdown| {
            let mut runner = trainlens::runner::RunnerConfig::new(base);
            runner.quiet = std::time::Duration::from_millis(200);
            runner.max_wait = std::time::Duration::from_millis(500);
            runner.poll = std::time::Duration::from_millis(100);
            app::serve_with_background(
                listener,
                state,
                runner,
                trainlens::alerts::sender::SenderConfig::default(),
                shutdown,
            )
        })
        .await
    }

    /// Binds a free port and spawns `serve(listener, base URL, shutdown)`.
    pub async fn spawn<F>(
        serve: impl FnOnce(tokio::net::TcpListener, &str, Shutdown) -> F,
    ) -> LiveServer
    where
        F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(listener, &base, shutdown));
        LiveServer { base, stop, task }
    }

    /// Stops the server (which must still be running) and waits until it
    /// has stopped, without an error.
    pub async fn stop(self) {
        self.stop.send(()).expect("the server is still running");
        self.task.await.unwrap().unwrap();
    }
}

/// The Python the tests run: `$PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether `python -c code` runs and succeeds (false when there is no
/// `python` to run).
pub fn python_runs(python: &str, code: &str) -> bool {
    std::process::Command::new(python)
        .args(["-c", code])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cmd` to its end off the async runtime's threads; what it wrote.
pub async fn output_of(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// What a finished process wrote: its stdout, then its stderr.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The JSON of the last `RESULT {json}` line a test script printed.
pub fn result_line(stdout: &str, report: &str) -> serde_json::Value {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line:\n{report}"))
}

/// A run of `project` that trains well so far but whose model record shows
/// six sigmoid layers without normalisation and SGD at lr 1 with momentum
/// 0.9: an `architecture` and a `hyperparameters` hint, nothing raised.
pub async fn hinted_run(store: &Store, project: &str) -> uuid::Uuid {
    use trainlens::record::{Layer, ModelRecord, Optimizer};
    let run = store
        .create_run(&new_run(project, "deep-sigmoid", serde_json::json!({})))
        .await
        .unwrap()
        .id;
    let layer = |name: String, outputs: u64, act: &str| Layer {
        name,
        kind: Some("Linear".into()),
        inputs: Some(64),
        outputs: Some(outputs),
        activation: Some(act.into()),
        ..Default::default()
    };
    let mut layers: Vec<Layer> = (1..=6)
        .map(|i| layer(format!("fc{i}"), 64, "sigmoid"))
        .collect();
    layers.push(layer("head".into(), 10, "none"));
    let model = ModelRecord {
        layers,
        loss: Some("cross_entropy".into()),
        optimizer: Some(Optimizer {
            name: Some("sgd".into()),
            lr: Some(1.0),
            momentum: Some(0.9),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut b = trainlens::model::Batch {
        model: Some(model),
        ..Default::default()
    };
    b.scalars.insert(
        "train/loss".into(),
        points(0..200, |s| 2.3 * (-(s as f64) / 80.0).exp() + 0.05),
    );
    store.ingest(run, &b, None).await.unwrap();
    run
}
