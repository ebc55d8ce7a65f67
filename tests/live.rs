//! The live pages' event streams (`web/live.rs`) over HTTP: a run page's
//! stream tells each new point, finding and status and ends after the run's
//! last diagnosis; the runs table's stream tells changes of its project;
//! both are fed from the database, so a write through one app instance (or
//! one `trainlens serve` process) reaches a stream opened on another, on
//! SQLite and PostgreSQL. Streams are bounded (503 past the limit, a few
//! pooled connections at most), honour `Last-Event-ID`, and never hold up a
//! graceful shutdown.

mod common;

use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use common::{LiveServer, TestDb, eager_runner, free_port, get, post_json, post_loss, send};
use futures_util::{Stream, StreamExt};
use scraper::{Html, Selector};
use serde_json::{Value, json};
use tower::ServiceExt;
use trainlens::app;
use trainlens::http::Live;
use trainlens::store::Store;

/// Polls every 20 ms: the tests wait for an event at most [`EVENT_WITHIN`].
fn fast(streams: usize) -> Live {
    Live::new(Duration::from_millis(20), Duration::from_secs(15), streams)
}

/// How long a test waits for an event it expects (the machine may be busy).
const EVENT_WITHIN: Duration = Duration::from_secs(10);
/// How long a test watches for an event it must not get: many polls.
const QUIET_FOR: Duration = Duration::from_millis(400);

fn app_of(store: &Arc<Store>, live: Live) -> Router {
    app::router(
        trainlens::http::AppState::new(store.clone(), "http://trainlens.test", 1 << 20)
            .with_live(live),
    )
}

/// A fresh SQLite database and an app on it with `live`.
async fn sqlite_app(live: Live) -> (TestDb, Router) {
    let db = TestDb::sqlite().await;
    let app = app_of(&db.store, live);
    (db, app)
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Ev {
    event: String,
    id: Option<String>,
    data: Value,
}

enum Next {
    Event(Ev),
    /// Nothing came within the time given.
    Quiet,
    /// The server ended the stream.
    Ended,
}

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// The events of one streamed response, parsed as they arrive.
struct Events {
    chunks: Chunks,
    buf: String,
}

impl Events {
    fn of_body(body: Body) -> Events {
        let chunks = body
            .into_data_stream()
            .map(|c| c.map_err(|e| e.to_string()));
        Events {
            chunks: Box::pin(chunks),
            buf: String::new(),
        }
    }

    fn of_response(resp: reqwest::Response) -> Events {
        let chunks = futures_util::stream::unfold(resp, |mut resp| async move {
            match resp.chunk().await {
                Ok(Some(b)) => Some((Ok(b), resp)),
                Ok(None) => None,
                Err(e) => Some((Err(e.to_string()), resp)),
            }
        });
        Events {
            chunks: Box::pin(chunks),
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped).
    async fn next(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(ev) = self.take() {
                return Next::Event(ev);
            }
            match tokio::time::timeout_at(deadline, self.chunks.next()).await {
                Err(_) => return Next::Quiet,
                Ok(None) => return Next::Ended,
                Ok(Some(Ok(b))) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                Ok(Some(Err(e))) => panic!("the stream failed: {e}"),
            }
        }
    }

    fn take(&mut self) -> Option<Ev> {
        loop {
            let end = self.buf.find("\n\n")?;
            let block: String = self.buf.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = (None, None, String::new());
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = Some(value.to_string()),
                    "id" => id = Some(value.to_string()),
                    "data" => data.push_str(value),
                    _ => {} // a comment (keep-alive) or a retry
                }
            }
            if let Some(event) = event {
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(Ev { event, id, data });
            }
        }
    }

    /// The next event, which must be an `event` within [`EVENT_WITHIN`].
    async fn expect(&mut self, event: &str, what: &str) -> Ev {
        match self.next(EVENT_WITHIN).await {
            Next::Event(ev) => {
                assert_eq!(ev.event, event, "{what}: {ev:?}");
                ev
            }
            Next::Quiet => panic!("{what}: no {event} event within {EVENT_WITHIN:?}"),
            Next::Ended => panic!("{what}: the stream ended before a {event} event"),
        }
    }

    /// Asserts that no event comes for [`QUIET_FOR`].
    async fn quiet(&mut self, what: &str) {
        match self.next(QUIET_FOR).await {
            Next::Quiet => {}
            Next::Event(ev) => panic!("{what}: unexpected event {ev:?}"),
            Next::Ended => panic!("{what}: the stream ended"),
        }
    }

    /// Asserts that the server ends the stream, whatever it tells before.
    async fn drained(&mut self, what: &str) {
        let t0 = Instant::now();
        loop {
            match self.next(EVENT_WITHIN).await {
                Next::Ended => return,
                Next::Event(_) if t0.elapsed() < EVENT_WITHIN => {}
                _ => panic!("{what}: the stream did not end"),
            }
        }
    }

    /// Asserts that the server ends the stream (after no more events).
    async fn ended(&mut self, what: &str) {
        match self.next(EVENT_WITHIN).await {
            Next::Ended => {}
            Next::Event(ev) => panic!("{what}: unexpected event {ev:?}"),
            Next::Quiet => panic!("{what}: the stream did not end"),
        }
    }
}

/// Opens an event stream through the router; asserts a 200 event stream.
async fn open(app: &Router, uri: &str, last_event_id: Option<&str>) -> Events {
    let mut req = Request::get(uri);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{uri}");
    assert_eq!(resp.headers()["content-type"], "text/event-stream", "{uri}");
    Events::of_body(resp.into_body())
}

/// The stream a page names in its `#live` element, if it has one.
fn events_url(html: &str) -> Option<String> {
    let doc = Html::parse_document(html);
    let sel = Selector::parse("#live").unwrap();
    doc.select(&sel).next().map(|e| {
        e.value()
            .attr("data-events")
            .expect("data-events")
            .to_string()
    })
}

async fn page_events_url(app: &Router, uri: &str) -> Option<String> {
    let (status, body) = send(app, get(uri)).await;
    assert_eq!(status, StatusCode::OK, "{uri}");
    events_url(body.as_str().expect("an HTML page"))
}

async fn create_run(app: &Router, project: &str, name: &str) -> String {
    let (status, run) = send(
        app,
        post_json("/api/v1/runs", &json!({"project": project, "name": name})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    run["id"].as_str().unwrap().to_string()
}

/// A healthy decaying loss over steps 0..n.
fn healthy(n: u64) -> (Vec<u64>, Vec<Value>) {
    let steps: Vec<u64> = (0..n).collect();
    let values = steps
        .iter()
        .map(|s| json!(2.0 * (-(*s as f64) / 50.0).exp()))
        .collect();
    (steps, values)
}

on_both_backends! {
    async fn a_run_page_streams_points_findings_and_its_end(db: &TestDb) {
        let app = app_of(&db.store, fast(8));
        let runner = eager_runner(&db.store, "http://trainlens.test");
        let run = create_run(&app, "p", "live").await;
        let (steps, values) = healthy(100);
        post_loss(&app, &run, &steps, &values).await;
        runner.diagnose(run.parse().unwrap()).await.unwrap();

        let url = page_events_url(&app, &format!("/runs/{run}")).await
            .expect("a running run's page names its stream");
        assert!(url.starts_with(&format!("/runs/{run}/events?seen=")), "{url}");
        let mut events = open(&app, &url, None).await;
        events.quiet("the page is up to date").await;

        post_loss(&app, &run, &[100], &[json!(0.2)]).await;
        let point = events.expect("run", "a new point").await;
        assert_eq!(point.data["status"], "running");
        let before = point.data["findings"].as_i64().unwrap();
        let version = point.data["version"].as_i64().unwrap();
        assert_eq!(point.id.as_deref(), Some(format!("{version}.{}.running", point.data["diagnosis"]).as_str()));
        events.quiet("told once").await;

        // A fault, then its diagnosis: the finding is news too.
        post_loss(&app, &run, &[101, 102], &[json!("NaN"), json!("NaN")]).await;
        let nan = events.expect("run", "the NaN").await;
        assert!(nan.data["version"].as_i64().unwrap() > version);
        assert_eq!(nan.data["findings"], before, "not diagnosed yet");
        runner.diagnose(run.parse().unwrap()).await.unwrap();
        let found = events.expect("run", "the finding").await;
        assert!(found.data["findings"].as_i64().unwrap() > before, "{found:?}");
        assert_eq!(found.data["diagnosis"], found.data["version"]);

        // It finishes: told at once, but the stream waits for the
        // diagnosis of its last data before it ends.
        let (status, body) = send(&app, post_json(&format!("/api/v1/runs/{run}/finish"), &json!({"status": "finished"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let finished = events.expect("run", "finished").await;
        assert_eq!(finished.data["status"], "finished");
        events.quiet("the last data is not diagnosed yet").await;
        runner.diagnose(run.parse().unwrap()).await.unwrap();
        let end = events.expect("run", "the last diagnosis").await;
        assert_eq!(end.data["diagnosis"], end.data["version"]);
        let end = events.expect("end", "the end").await;
        assert_eq!(end.data["status"], "finished");
        events.ended("after end").await;

        // A finished run's page streams nothing; its stream ends at once.
        assert_eq!(page_events_url(&app, &format!("/runs/{run}")).await, None);
        let mut again = open(&app, &format!("/runs/{run}/events"), None).await;
        again.expect("run", "the state, once").await;
        again.expect("end", "caught up").await;
    }

    async fn a_runs_table_streams_the_changes_of_its_project(db: &TestDb) {
        let app = app_of(&db.store, fast(8));
        let runner = eager_runner(&db.store, "http://trainlens.test");
        let mine = create_run(&app, "p & q", "mine").await;
        let other = create_run(&app, "elsewhere", "other").await;
        let url = page_events_url(&app, "/?project=p+%26+q").await
            .expect("the runs page names its stream");
        assert!(url.starts_with("/events/runs?project=p+%26+q&since="), "{url}");
        let mut table = open(&app, &url, None).await;
        let mut all = open(&app, &page_events_url(&app, "/").await.unwrap(), None).await;
        // The runs were created a moment before the pages were drawn: news
        // at most once (the page's reads may have missed them), then quiet.
        for s in [&mut table, &mut all] {
            if let Next::Event(ev) = s.next(QUIET_FOR).await {
                assert_eq!(ev.event, "runs");
            }
            s.quiet("told once").await;
        }

        post_loss(&app, &other, &[0], &[json!(1.0)]).await;
        all.expect("runs", "every project's table").await;
        table.quiet("another project's run").await;

        post_loss(&app, &mine, &[0], &[json!(1.0)]).await;
        let ev = table.expect("runs", "a point").await;
        assert_eq!(ev.data["changed"], 1);
        let since: f64 = ev.id.as_deref().unwrap().parse().expect("the id is a time");
        assert!(since > 1.7e9);
        all.expect("runs", "every project's table").await;

        create_run(&app, "p & q", "new").await;
        table.expect("runs", "a new run").await;
        runner.diagnose(mine.parse().unwrap()).await.unwrap();
        table.expect("runs", "a diagnosis").await;
        let (status, _) = send(&app, post_json(&format!("/api/v1/runs/{mine}/finish"), &json!({"status": "failed"}))).await;
        assert_eq!(status, StatusCode::OK);
        table.expect("runs", "a status").await;
        table.quiet("nothing else").await;
    }

    async fn a_write_through_one_app_instance_reaches_a_stream_on_another(db: &TestDb) {
        // Two instances, each with its own pool on the same database, as
        // two replicas are: nothing shared but the database.
        let other = Arc::new(Store::connect(&db.url).await.unwrap());
        let a = app_of(&db.store, fast(8));
        let b = app_of(&other, fast(8));
        let run = create_run(&a, "p", "shared").await;
        let mut on_b = open(&b, &page_events_url(&b, &format!("/runs/{run}")).await.unwrap(), None).await;
        let mut table_b = open(&b, &page_events_url(&b, "/?project=p").await.unwrap(), None).await;
        let _ = table_b.next(QUIET_FOR).await; // the run's creation, maybe
        on_b.quiet("up to date").await;
        post_loss(&a, &run, &[0], &[json!(1.0)]).await;
        let ev = on_b.expect("run", "a point posted to the other instance").await;
        assert_eq!(ev.data["version"], 1);
        table_b.expect("runs", "the other instance's table").await;
        other.close().await;
    }
}

#[tokio::test]
async fn bad_stream_requests_get_clear_errors() {
    let (db, app) = sqlite_app(fast(8)).await;
    let unknown = uuid::Uuid::new_v4();
    let (status, body) = send(&app, get(&format!("/runs/{unknown}/events"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = send(&app, get("/runs/nope/events")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "id");
    let (status, body) = send(&app, get("/events/runs?since=yesterday")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "since");
    let (status, body) = send(&app, get("/events/runs?sinse=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    db.cleanup().await;
}

#[tokio::test]
async fn past_the_streams_limit_a_stream_gets_503_until_one_closes() {
    let (db, app) = sqlite_app(fast(2)).await;
    let run = create_run(&app, "p", "r").await;
    let first = open(&app, &format!("/runs/{run}/events"), None).await;
    let _second = open(&app, "/events/runs", None).await;
    for uri in [format!("/runs/{run}/events"), "/events/runs".to_string()] {
        let resp = app.clone().oneshot(get(&uri)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(resp.headers().contains_key("retry-after"));
        let (_, body) = send(&app, get(&uri)).await;
        assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    }
    // Pages and the API are not streams: they are served as before.
    let (status, _) = send(&app, get(&format!("/runs/{run}"))).await;
    assert_eq!(status, StatusCode::OK);
    drop(first);
    let _third = open(&app, &format!("/runs/{run}/events"), None).await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_reconnect_resumes_from_its_last_event_id() {
    let (db, app) = sqlite_app(fast(8)).await;
    let run = create_run(&app, "p", "r").await;
    post_loss(&app, &run, &[0], &[json!(1.0)]).await;
    // The first connection tells the state the page did not have.
    let mut first = open(&app, &format!("/runs/{run}/events?seen=0.0.running"), None).await;
    let told = first.expect("run", "news to the page").await;
    let id = told.id.clone().unwrap();
    drop(first);
    // The browser reconnects with the last id (and the page's old `seen`):
    // the id wins, so nothing is told again until something changes.
    let uri = format!("/runs/{run}/events?seen=0.0.running");
    let mut again = open(&app, &uri, Some(&id)).await;
    again.quiet("the last event's state").await;
    post_loss(&app, &run, &[1], &[json!(0.9)]).await;
    let next = again.expect("run", "what came after").await;
    assert_ne!(next.id.as_deref(), Some(id.as_str()));
    // An old id: what changed since is told at once.
    let mut old = open(&app, &uri, Some(&id)).await;
    old.expect("run", "missed while away").await;

    // The table's id is a time: changes after it only.
    let mut table = open(&app, "/events/runs?since=0", None).await;
    let told = table.expect("runs", "everything after 0").await;
    let at: f64 = told.id.unwrap().parse().unwrap();
    let later = format!("{:.3}", at + 5.0);
    let mut table = open(&app, "/events/runs?since=0", Some(&later)).await;
    table.quiet("nothing after the last event's time").await;
    db.cleanup().await;
}

/// However many streams poll, they take no connection of the store's pool
/// (they read through their own), and requests are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_leave_the_pool_to_requests() {
    let (db, app) = sqlite_app(Live::new(
        Duration::from_millis(1),
        Duration::from_secs(15),
        64,
    ))
    .await;
    let run = create_run(&app, "p", "r").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut readers = Vec::new();
    for i in 0..48 {
        let uri = if i % 2 == 0 {
            format!("/runs/{run}/events")
        } else {
            "/events/runs".to_string()
        };
        let mut events = open(&app, &uri, None).await;
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Next::Ended = events.next(Duration::from_millis(50)).await {
                    break;
                }
            }
        }));
    }
    let pool = db.store.pool().clone();
    let mut most = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(600) {
        most = most.max((pool.size() as usize).saturating_sub(pool.num_idle()));
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let t0 = Instant::now();
    for _ in 0..10 {
        let (status, _) = send(&app, get(&format!("/api/v1/runs/{run}"))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let took = t0.elapsed();
    stop.cancel();
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(most, 0, "the streams took connections of the store's pool");
    assert!(
        took < Duration::from_secs(5),
        "10 requests took {took:?} beside the streams"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_do_not_hold_up_a_graceful_shutdown() {
    let db = TestDb::sqlite().await;
    let state = db.state().with_live(fast(8));
    let app = app::router(state.clone());
    let run = create_run(&app, "p", "r").await;
    let server = LiveServer::serve(state).await;
    let client = trainlens::http_client().build().unwrap();
    let mut streams = Vec::new();
    for uri in [format!("/runs/{run}/events"), "/events/runs".to_string()] {
        let resp = client
            .get(format!("{}{uri}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(Events::of_response(resp));
    }
    streams[0].expect("run", "the state").await;
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the server stops with streams open");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    for s in &mut streams {
        s.drained("the server stopped").await;
    }
    db.cleanup().await;
}

/// `trainlens serve`, killed if the test fails before it stops it.
struct Replica {
    child: Option<Child>,
    base: String,
}

impl Replica {
    fn start(db_url: &str) -> Replica {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_trainlens"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(["--live-poll-ms", "100", "--crash-after", "0"])
            .env("DATABASE_URL", db_url)
            .env_remove("TRAINLENS_SERVER")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start trainlens serve");
        Replica {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn healthy(&self, client: &reqwest::Client) {
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not become healthy", self.base);
    }

    /// SIGTERM; waits (up to 10 s) for a clean exit.
    async fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "a replica with open streams did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two `trainlens serve` processes on one database: a point posted to one
/// reaches the run page's and the runs table's streams opened on the other.
async fn two_replicas(db: &TestDb) {
    let client = trainlens::http_client().build().unwrap();
    let (a, b) = (Replica::start(&db.url), Replica::start(&db.url));
    a.healthy(&client).await;
    b.healthy(&client).await;
    let run = client
        .post(format!("{}/api/v1/runs", a.base))
        .header("content-type", "application/json")
        .body(json!({"project": "p", "name": "replicated"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 201);
    let run: Value = serde_json::from_str(&run.text().await.unwrap()).unwrap();
    let run = run["id"].as_str().unwrap();
    let page = |uri: String| {
        let client = client.clone();
        async move {
            let html = client.get(uri).send().await.unwrap().text().await.unwrap();
            events_url(&html).expect("a live page")
        }
    };
    let open = |uri: String| {
        let client = client.clone();
        async move {
            let resp = client.get(uri).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            Events::of_response(resp)
        }
    };
    let run_url = page(format!("{}/runs/{run}", b.base)).await;
    let mut on_b = open(format!("{}{run_url}", b.base)).await;
    let table_url = page(format!("{}/?project=p", b.base)).await;
    let mut table_b = open(format!("{}{table_url}", b.base)).await;
    let _ = table_b.next(QUIET_FOR).await; // the run's creation, maybe
    on_b.quiet("up to date").await;

    let posted = client
        .post(format!("{}/api/v1/runs/{run}/scalars", a.base))
        .header("content-type", "application/json")
        .body(json!({"key": "train/loss", "steps": [0, 1], "values": [1.0, 0.9]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let ev = on_b
        .expect("run", "a point posted to the other replica")
        .await;
    assert_eq!(ev.data["version"], 1);
    table_b.expect("runs", "the other replica's table").await;
    // Both stop promptly with the streams still open.
    a.stop().await;
    b.stop().await;
    on_b.drained("its replica stopped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_sqlite_file() {
    let db = TestDb::sqlite().await;
    two_replicas(&db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_postgres_database() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    two_replicas(&db).await;
    db.cleanup().await;
}
