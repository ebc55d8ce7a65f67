//! The diagnostics runner, findings, webhooks and the alert outbox.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{LiveServer, Receiver, TestDb, eventually, get, send};
use serde_json::{Value, json};
use tokio::sync::Notify;
use trainlens::alerts::sender::{Sender, SenderConfig};
use trainlens::alerts::{Format, signature};
use trainlens::diagnostics::{Kind, Severity};
use trainlens::model::Batch;
use trainlens::model::FindingStatus;
use trainlens::runner::{Runner, RunnerConfig};
use trainlens::store::Store;
use trainlens::store::webhooks::NewWebhook;

/// A runner that diagnoses as soon as data is there.
fn eager_runner(store: &Arc<Store>) -> Runner {
    common::eager_runner(store, "http://trainlens.test")
}

/// A runner with the given cadence (see `RunnerConfig::wait_after`).
fn paced_runner(
    store: &Arc<Store>,
    quiet: Duration,
    min_wait: Duration,
    max_wait: Duration,
    cost_factor: u32,
) -> Runner {
    let mut cfg = RunnerConfig::new("http://trainlens.test");
    cfg.quiet = quiet;
    cfg.min_wait = min_wait;
    cfg.max_wait = max_wait;
    cfg.cost_factor = cost_factor;
    Runner::new(store.clone(), cfg, Arc::new(Notify::new()))
}

fn fast_sender(store: &Arc<Store>) -> Sender {
    let cfg = SenderConfig {
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..SenderConfig::default()
    };
    Sender::new(store.clone(), cfg, Arc::new(Notify::new()))
}

async fn new_run(store: &Store, project: &str) -> uuid::Uuid {
    let run = common::new_run(project, "r", json!({"lr": 5.0}));
    store.create_run(&run).await.unwrap().id
}

/// Training loss over `steps`, NaN from `nan_from` on.
fn loss(steps: std::ops::Range<u64>, nan_from: Option<u64>) -> Batch {
    let mut b = Batch::default();
    let pts = common::points(steps, |s| {
        if nan_from.is_some_and(|n| s >= n) {
            f64::NAN
        } else {
            2.3 * (-(s as f64) / 80.0).exp() + 0.05
        }
    });
    b.scalars.insert("train/loss".into(), pts);
    b
}

/// Adds a webhook to `url` signed with "s3cret", then makes a run of
/// `project` diverge at step 120 and diagnoses it: one alert queued.
async fn diverge_with_signed_hook(store: &Arc<Store>, url: &str, project: &str) -> uuid::Uuid {
    store
        .add_webhook(&hook(url, Severity::Warning, None, Some("s3cret")))
        .await
        .unwrap();
    let run = new_run(store, project).await;
    store
        .ingest(run, &loss(0..200, Some(120)), None)
        .await
        .unwrap();
    eager_runner(store).tick().await.unwrap();
    run
}

fn hook(url: &str, min: Severity, project: Option<&str>, secret: Option<&str>) -> NewWebhook {
    NewWebhook {
        url: url.into(),
        format: Format::Json,
        min_severity: min,
        secret: secret.map(Into::into),
        project: project.map(Into::into),
    }
}

on_both_backends! {
    async fn a_finding_that_stops_holding_is_resolved_not_deleted(db: &TestDb) {
        let store = &db.store;
        let runner = eager_runner(store);
        let run = new_run(store, "p").await;
        store.ingest(run, &loss(0..300, Some(150)), None).await.unwrap();
        let done = runner.tick().await.unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].saved.raised, vec![Kind::Divergence]);
        let f = store.findings(run, None).await.unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].finding.kind, f[0].finding.severity, f[0].status), (Kind::Divergence, Severity::Critical, FindingStatus::Open));
        assert_eq!(f[0].finding.onset_step, Some(150));
        assert!(!f[0].finding.fixes.is_empty() && !f[0].finding.cause.is_empty());
        assert!(runner.tick().await.unwrap().is_empty(), "nothing new: nothing to do");

        // The client re-sends the bad steps with finite values.
        store.ingest(run, &loss(150..300, None), None).await.unwrap();
        let done = runner.tick().await.unwrap();
        assert_eq!(done[0].saved.resolved, vec![Kind::Divergence]);
        let f = store.findings(run, None).await.unwrap();
        assert_eq!(f.len(), 1, "kept, not deleted");
        assert_eq!(f[0].status, FindingStatus::Resolved);
        assert!(f[0].resolved_at.is_some());
        assert!(store.findings(run, Some(FindingStatus::Open)).await.unwrap().is_empty());
        let state = store.diagnosis_state(run).await.unwrap().unwrap();
        assert_eq!(state.diagnosed_version, store.get_run(run).await.unwrap().unwrap().data_version);
    }

    async fn a_run_being_written_is_diagnosed_again_after_min_wait_when_its_diagnosis_is_cheap(db: &TestDb) {
        let store = &db.store;
        // Never quiet within the test: every pass below sees a run being written.
        let runner = paced_runner(store, Duration::from_secs(600), Duration::from_millis(300), Duration::from_secs(600), 1);
        let run = new_run(store, "p").await;
        store.ingest(run, &loss(0..100, None), None).await.unwrap();
        assert_eq!(runner.tick().await.unwrap().len(), 1, "a run never diagnosed is due at once");
        store.ingest(run, &loss(100..110, None), None).await.unwrap();
        assert!(runner.tick().await.unwrap().is_empty(), "diagnosed less than min_wait ago");
        tokio::time::sleep(Duration::from_millis(350)).await;
        store.ingest(run, &loss(110..120, Some(110)), None).await.unwrap();
        let done = runner.tick().await.unwrap();
        assert_eq!(done.len(), 1, "min_wait, not max_wait (10 minutes), after the last diagnosis");
        assert_eq!(done[0].saved.raised, vec![Kind::Divergence]);
    }

    async fn a_run_being_written_waits_cost_factor_times_its_diagnosis_up_to_max_wait(db: &TestDb) {
        let store = &db.store;
        // Any diagnosis costs more than 3 s / 10⁶ = 3 µs: the wait is max_wait.
        let runner = paced_runner(store, Duration::from_secs(600), Duration::from_millis(50), Duration::from_secs(3), 1_000_000);
        let run = new_run(store, "p").await;
        store.ingest(run, &loss(0..100, None), None).await.unwrap();
        assert_eq!(runner.tick().await.unwrap().len(), 1);
        let diagnosed = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.ingest(run, &loss(100..110, None), None).await.unwrap();
        assert!(runner.tick().await.unwrap().is_empty(), "past min_wait, but held back for its cost");
        let left = Duration::from_millis(3100).saturating_sub(diagnosed.elapsed());
        tokio::time::sleep(left).await;
        store.ingest(run, &loss(110..120, None), None).await.unwrap();
        assert_eq!(runner.tick().await.unwrap().len(), 1, "never later than max_wait");
        // A run that went quiet is diagnosed at once, whatever its cost.
        let runner = paced_runner(store, Duration::ZERO, Duration::ZERO, Duration::from_secs(600), 1_000_000);
        store.ingest(run, &loss(120..130, None), None).await.unwrap();
        assert_eq!(runner.tick().await.unwrap().len(), 1);
        store.ingest(run, &loss(130..140, None), None).await.unwrap();
        assert_eq!(runner.tick().await.unwrap().len(), 1, "quiet: not held back");
    }

    async fn two_runners_never_diagnose_one_run_at_once(db: &TestDb) {
        let store = &db.store;
        let mut runs = Vec::new();
        for _ in 0..6 {
            runs.push(new_run(store, "p").await);
        }
        let writer = {
            let store = store.clone();
            let runs = runs.clone();
            tokio::spawn(async move {
                for round in 0..15u64 {
                    for (i, run) in runs.iter().enumerate() {
                        let nan = (i % 2 == 0).then_some(round * 20 + 10);
                        store.ingest(*run, &loss(round * 20..round * 20 + 20, nan), None).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        };
        // The runners tick until the writer is done and a tick finds nothing
        // left to do (not for a fixed time: a loaded machine writes slower).
        let written = Arc::new(AtomicBool::new(false));
        let runners: Vec<_> = (0..2)
            .map(|_| {
                let runner = eager_runner(store);
                let written = written.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while Instant::now() < deadline {
                        let done = written.load(Ordering::SeqCst);
                        let got = runner.tick().await.unwrap();
                        if done && got.is_empty() {
                            break;
                        }
                        seen.extend(got);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    seen
                })
            })
            .collect();
        writer.await.unwrap();
        written.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for (who, r) in runners.into_iter().enumerate() {
            all.extend(r.await.unwrap().into_iter().map(|d| (who, d)));
        }
        assert!(all.len() >= 6, "{} diagnoses", all.len());
        for run in &runs {
            let mut mine: Vec<_> = all.iter().filter(|(_, d)| d.run == *run).collect();
            mine.sort_by_key(|(_, d)| d.started);
            for pair in mine.windows(2) {
                assert!(pair[1].1.started >= pair[0].1.saving, "run {run}: runners {} and {} overlapped", pair[0].0, pair[1].0);
            }
            let v = store.get_run(*run).await.unwrap().unwrap().data_version;
            assert_eq!(store.diagnosis_state(*run).await.unwrap().unwrap().diagnosed_version, v, "run {run} is up to date");
        }
        // Each even run diverged exactly once: one finding, one raise.
        for (i, run) in runs.iter().enumerate() {
            let open: Vec<Kind> = store.findings(*run, Some(FindingStatus::Open)).await.unwrap().iter().map(|f| f.finding.kind).collect();
            assert_eq!(open.contains(&Kind::Divergence), i % 2 == 0, "run {i}: {open:?}");
        }
    }

    async fn two_senders_deliver_each_alert_once(db: &TestDb) {
        let store = &db.store;
        let receiver = Receiver::start().await;
        store.add_webhook(&hook(&receiver.url, Severity::Warning, None, None)).await.unwrap();
        store.add_webhook(&hook(&receiver.url, Severity::Info, None, None)).await.unwrap();
        let runner = eager_runner(store);
        for _ in 0..5 {
            let run = new_run(store, "p").await;
            store.ingest(run, &loss(0..200, Some(100)), None).await.unwrap();
        }
        runner.tick().await.unwrap();
        assert_eq!(store.deliveries().await.unwrap().len(), 10);
        let (a, b) = (fast_sender(store), fast_sender(store));
        let (ra, rb) = tokio::join!(a.deliver_due(), b.deliver_due());
        assert_eq!(ra.unwrap() + rb.unwrap(), 10);
        let ids: Vec<String> = receiver
            .accepted()
            .iter()
            .map(|h| h.headers["x-trainlens-delivery"].to_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 10);
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 10, "no delivery twice");
        }

    async fn one_alert_per_webhook_and_transition(db: &TestDb) {
        let store = &db.store;
        let runner = eager_runner(store);
        let all = store.add_webhook(&hook("http://127.0.0.1:9/a", Severity::Warning, None, None)).await.unwrap();
        let critical = store.add_webhook(&hook("http://127.0.0.1:9/b", Severity::Critical, Some("p"), None)).await.unwrap();
        store.add_webhook(&hook("http://127.0.0.1:9/c", Severity::Info, Some("other"), None)).await.unwrap();
        let run = new_run(store, "p").await;
        store.ingest(run, &loss(0..200, Some(100)), None).await.unwrap();
        runner.tick().await.unwrap();
        let rows = store.deliveries().await.unwrap();
        let hooks: BTreeSet<i64> = rows.iter().map(|r| r.webhook_id).collect();
        assert_eq!(hooks, BTreeSet::from([all.id, critical.id]), "{rows:?}");
        assert!(rows.iter().all(|r| r.kind == "divergence" && r.status == "pending"));

        // Still diverging: no new alert.
        store.ingest(run, &loss(200..260, Some(200)), None).await.unwrap();
        runner.tick().await.unwrap();
        assert_eq!(store.deliveries().await.unwrap().len(), 2);

        // Resolved, then diverging again: a new transition, a new alert each.
        store.ingest(run, &loss(100..260, None), None).await.unwrap();
        runner.tick().await.unwrap();
        store.ingest(run, &loss(260..300, Some(280)), None).await.unwrap();
        runner.tick().await.unwrap();
        let rows = store.deliveries().await.unwrap();
        assert_eq!(rows.len(), 4);
        let ids: BTreeSet<&str> = rows.iter().map(|r| r.delivery_id.as_str()).collect();
        assert_eq!(ids.len(), 4, "every delivery has its own idempotency id");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_same_signed_alert_until_it_accepts() {
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let receiver = Receiver::start().await;
    receiver
        .fail_first
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let run = diverge_with_signed_hook(store, &receiver.url, "vision").await;

    let sender = fast_sender(store);
    let delivered = eventually(10.0, async || {
        sender.deliver_due().await.unwrap();
        !receiver.accepted().is_empty()
    })
    .await;
    assert!(delivered, "hits: {:?}", receiver.hits());
    // A few more passes must not deliver it again.
    for _ in 0..5 {
        sender.deliver_due().await.unwrap();
    }
    let hits = receiver.hits();
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    let id = hits[0].headers["x-trainlens-delivery"].to_str().unwrap();
    for h in &hits {
        assert_eq!(h.headers["x-trainlens-delivery"], id);
        assert_eq!(h.body, hits[0].body);
        assert_eq!(
            h.headers["x-trainlens-signature"].to_str().unwrap(),
            signature("s3cret", h.body.as_bytes())
        );
    }
    let body: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(
        body["run"]["url"],
        format!("http://trainlens.test/runs/{run}")
    );
    assert_eq!(body["run"]["project"], "vision");
    assert_eq!(
        (
            body["finding"]["kind"].as_str(),
            body["finding"]["severity"].as_str()
        ),
        (Some("divergence"), Some("critical"))
    );
    assert_eq!(body["finding"]["onset_step"], 120);
    assert!(body["finding"]["title"].as_str().unwrap().contains("NaN"));
    let rows = store.deliveries().await.unwrap();
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("delivered", 3)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let elsewhere = Receiver::start().await;
    let receiver = Receiver::start().await;
    *receiver.redirect_to.lock().unwrap() = Some(elsewhere.url.clone());
    let _run = diverge_with_signed_hook(store, &receiver.url, "p").await;
    fast_sender(store).deliver_due().await.unwrap();
    assert_eq!(receiver.hits().len(), 1);
    assert!(
        elsewhere.hits().is_empty(),
        "the payload and its signature went nowhere else"
    );
    let rows = store.deliveries().await.unwrap();
    assert_eq!(rows[0].status, "pending");
    assert!(
        rows[0].last_error.as_deref().unwrap().contains("302"),
        "{rows:?}"
    );
    db.cleanup().await;
}

/// The whole service (API, runner, sender) on a socket, and a client for it.
struct Service {
    server: LiveServer,
    client: reqwest::Client,
}

impl Service {
    async fn start(db: &TestDb) -> Service {
        let server = LiveServer::spawn(|listener, base, shutdown| {
            let state = trainlens::http::AppState::new(db.store.clone(), base, 1 << 20);
            let sender = SenderConfig {
                base_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(300),
                // Retries ~0.3 s apart must not use up the attempts while a
                // loaded machine takes seconds to stop the service: the
                // restart test would see a delivery given up ("failed")
                // instead of pending.
                max_attempts: 1000,
                ..SenderConfig::default()
            };
            trainlens::app::serve_with_background(
                listener,
                state,
                RunnerConfig::new(base),
                sender,
                shutdown,
            )
        })
        .await;
        let client = trainlens::http_client().build().unwrap();
        Service { server, client }
    }

    /// POSTs `body` to `path`, asserts a 2xx answer and returns its JSON.
    async fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.server.base);
        let resp = self
            .client
            .post(&url)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    /// The JSON answer to a GET of `path`.
    async fn get(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(format!("{}{path}", self.server.base))
            .send()
            .await
            .unwrap();
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    /// Stops it gracefully; it must stop without an error.
    async fn stop(self) {
        self.server.stop().await;
    }
}

/// A receiver with a webhook for every warning of every project.
async fn hooked_receiver(store: &Store) -> Receiver {
    let receiver = Receiver::start().await;
    store
        .add_webhook(&hook(&receiver.url, Severity::Warning, None, None))
        .await
        .unwrap();
    receiver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_divergence_alert_arrives_within_five_seconds_of_the_nan() {
    let db = TestDb::sqlite().await;
    let receiver = hooked_receiver(&db.store).await;
    let service = Service::start(&db).await;
    let base = service.server.base.clone();
    let run = service
        .post("/api/v1/runs", json!({"project": "p", "name": "live"}))
        .await;
    let id = run["id"].as_str().unwrap();
    let steps: Vec<u64> = (0..100).collect();
    let values: Vec<f64> = steps
        .iter()
        .map(|s| 2.0 * (-(*s as f64) / 50.0).exp())
        .collect();
    let scalars = format!("/api/v1/runs/{id}/scalars");
    service
        .post(
            &scalars,
            json!({"key": "train/loss", "steps": steps, "values": values}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.hits().is_empty(), "a healthy start raises nothing");

    let t0 = Instant::now();
    service
        .post(
            &scalars,
            json!({"key": "train/loss", "steps": [100, 101], "values": ["NaN", "NaN"]}),
        )
        .await;
    let arrived = eventually(5.0, async || !receiver.accepted().is_empty()).await;
    let elapsed = t0.elapsed();
    assert!(arrived, "no alert within 5 s");
    eprintln!("divergence alert arrived {elapsed:?} after the NaN");
    let body: Value = serde_json::from_str(&receiver.accepted()[0].body).unwrap();
    assert_eq!(body["finding"]["kind"], "divergence");
    assert_eq!(body["run"]["url"], format!("{base}/runs/{id}"));

    let findings = service.get(&format!("/api/v1/runs/{id}/findings")).await;
    assert_eq!(findings["up_to_date"], true);
    assert_eq!(findings["findings"][0]["kind"], "divergence");
    service.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_a_delivery_is_pending_loses_and_duplicates_nothing() {
    let db = TestDb::sqlite().await;
    let receiver = hooked_receiver(&db.store).await;
    receiver
        .up
        .store(false, std::sync::atomic::Ordering::SeqCst);

    let service = Service::start(&db).await;
    let run = service
        .post("/api/v1/runs", json!({"name": "restart"}))
        .await;
    let id = run["id"].as_str().unwrap().to_string();
    service
        .post(
            &format!("/api/v1/runs/{id}/scalars"),
            json!({"key": "train/loss", "steps": [0, 1, 2, 3], "values": [2.0, 1.9, "NaN", "NaN"]}),
        )
        .await;
    let failed_once = eventually(10.0, async || {
        db.store
            .deliveries()
            .await
            .unwrap()
            .first()
            .is_some_and(|d| d.attempts >= 1)
    })
    .await;
    assert!(failed_once);
    service.stop().await;
    let pending = db.store.deliveries().await.unwrap();
    assert_eq!((pending.len(), pending[0].status.as_str()), (1, "pending"));
    assert!(receiver.accepted().is_empty());

    // The receiver recovers; a new process (same database) takes over.
    receiver.up.store(true, std::sync::atomic::Ordering::SeqCst);
    let service = Service::start(&db).await;
    assert!(
        eventually(10.0, async || !receiver.accepted().is_empty()).await,
        "the pending alert is delivered after the restart"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1, "delivered once");
    assert_eq!(
        accepted[0].headers["x-trainlens-delivery"]
            .to_str()
            .unwrap(),
        pending[0].delivery_id
    );
    assert_eq!(db.store.deliveries().await.unwrap()[0].status, "delivered");
    service.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn findings_and_webhook_api() {
    let db = TestDb::sqlite().await;
    let app = trainlens::app::router(db.state().with_admin_token(Some("t0ken")));
    let run = new_run(&db.store, "vision").await;
    db.store
        .ingest(run, &loss(0..200, Some(50)), None)
        .await
        .unwrap();

    let (status, body) = send(&app, get(&format!("/api/v1/runs/{run}/findings"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["up_to_date"], false, "not diagnosed yet");
    eager_runner(&db.store).tick().await.unwrap();
    let (_, body) = send(
        &app,
        get(&format!("/api/v1/runs/{run}/findings?status=open")),
    )
    .await;
    assert_eq!(body["up_to_date"], true);
    let f = &body["findings"][0];
    for field in [
        "kind",
        "severity",
        "onset_step",
        "title",
        "evidence",
        "cause",
        "fixes",
        "status",
    ] {
        assert!(!f[field].is_null(), "{field} missing: {f}");
    }
    let (_, all) = send(
        &app,
        get("/api/v1/findings?project=vision&min_severity=error"),
    )
    .await;
    assert_eq!(all["findings"][0]["run_id"], run.to_string());
    let (_, none) = send(&app, get("/api/v1/findings?project=nlp")).await;
    assert_eq!(none["findings"], json!([]));
    for (uri, status) in [
        ("/api/v1/findings?min_severity=fatal".to_string(), 400),
        (format!("/api/v1/runs/{run}/findings?status=maybe"), 400),
        (
            format!("/api/v1/runs/{}/findings", uuid::Uuid::new_v4()),
            404,
        ),
    ] {
        assert_eq!(send(&app, get(&uri)).await.0, status, "{uri}");
    }

    // Webhooks: operator only.
    let add = |auth: Option<&str>, body: Value| {
        let mut req = axum::http::Request::post("/api/v1/webhooks")
            .header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.body(axum::body::Body::from(body.to_string())).unwrap()
    };
    let good = json!({"url": "https://hooks.example.com/x", "format": "slack", "min_severity": "error", "secret": "k"});
    assert_eq!(send(&app, add(None, good.clone())).await.0, 401);
    assert_eq!(
        send(&app, add(Some("Bearer wrong"), good.clone())).await.0,
        401
    );
    let (status, created) = send(&app, add(Some("Bearer t0ken"), good)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["signed"], true);
    assert!(created.get("secret").is_none(), "the secret is never shown");
    for (bad, field) in [
        (json!({"url": "ftp://x/y"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://x/y", "format": "teams"}), "format"),
        (
            json!({"url": "http://x/y", "min_severity": "fatal"}),
            "min_severity",
        ),
    ] {
        let (status, body) = send(&app, add(Some("Bearer t0ken"), bad)).await;
        assert_eq!(
            (status.as_u16(), body["error"]["field"].as_str()),
            (422, Some(field))
        );
    }
    let off = trainlens::app::router(db.state());
    assert_eq!(
        send(
            &off,
            add(Some("Bearer t0ken"), json!({"url": "http://x/y"}))
        )
        .await
        .0,
        403,
        "no admin token configured: off"
    );
    let list = axum::http::Request::get("/api/v1/webhooks")
        .header("authorization", "Bearer t0ken")
        .body(axum::body::Body::empty())
        .unwrap();
    let (_, hooks) = send(&app, list).await;
    assert_eq!(hooks["webhooks"].as_array().unwrap().len(), 1);
    let del = |id: &str| {
        axum::http::Request::delete(format!("/api/v1/webhooks/{id}"))
            .header("authorization", "Bearer t0ken")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, del(&created["id"].to_string())).await.0, 204);
    assert_eq!(send(&app, del(&created["id"].to_string())).await.0, 404);
    db.cleanup().await;
}

/// Architecture and hyperparameter hints are findings of severity info in
/// the findings API, and no webhook fires for them, not even one that asks
/// for every severity.
#[tokio::test]
async fn hints_show_in_the_findings_api_and_fire_no_webhook() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    db.store
        .add_webhook(&hook(
            "http://127.0.0.1:9/every",
            Severity::Info,
            None,
            None,
        ))
        .await
        .unwrap();
    let run = common::hinted_run(&db.store, "p").await;
    let done = eager_runner(&db.store).tick().await.unwrap();
    assert!(done[0].saved.raised.is_empty(), "{:?}", done[0].saved);
    let (status, body) = send(&app, get(&format!("/api/v1/runs/{run}/findings"))).await;
    assert_eq!(status, 200);
    let kinds: Vec<(&str, &str)> = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("architecture", "info"), ("hyperparameters", "info")],
        "{body}"
    );
    let title = |f: &Value| f["title"].as_str().unwrap().to_string();
    let (arch, hyper) = (&body["findings"][0], &body["findings"][1]);
    assert!(title(arch).contains("6 hidden sigmoid layers"), "{arch}");
    assert_eq!(arch["evidence"]["layer"], "fc1");
    assert!(!arch["fixes"].as_array().unwrap().is_empty());
    assert!(
        title(hyper).contains("effective step lr/(1−m) of 10"),
        "{hyper}"
    );
    // Open findings across projects, info included when asked.
    let (_, open) = send(&app, get("/api/v1/findings?min_severity=info")).await;
    assert_eq!(open["findings"].as_array().unwrap().len(), 2);
    let (_, raised) = send(&app, get("/api/v1/findings?min_severity=warning")).await;
    assert_eq!(raised["findings"], json!([]));
    assert!(
        db.store.deliveries().await.unwrap().is_empty(),
        "no alert queued"
    );
    // A second diagnosis of more data queues none either.
    db.store
        .ingest(run, &loss(200..260, None), None)
        .await
        .unwrap();
    eager_runner(&db.store).tick().await.unwrap();
    assert!(db.store.deliveries().await.unwrap().is_empty());
    db.cleanup().await;
}

/// Every recorded run, replayed through the API: every expected kind is
/// raised (warning or worse) and nothing outside expect ∪ allow is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_through_the_api_gets_its_labels() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let runner = eager_runner(&db.store);
    let labels: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures_dir().join("labels.json")).unwrap(),
    )
    .unwrap();
    let mut failures = Vec::new();
    println!("{:<28} {:<28} {:<50} verdict", "run", "expected", "raised");
    for path in common::fixture_files() {
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let req = axum::http::Request::post("/api/v1/import")
            .body(axum::body::Body::from(std::fs::read(&path).unwrap()))
            .unwrap();
        let (status, run) = send(&app, req).await;
        assert_eq!(status, 201, "{name}: {run}");
        let id: uuid::Uuid = run["id"].as_str().unwrap().parse().unwrap();
        runner.diagnose(id).await.unwrap().expect("diagnosed");
        let (_, body) = send(
            &app,
            get(&format!("/api/v1/runs/{id}/findings?status=open")),
        )
        .await;
        let raised: BTreeSet<String> = body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] != "info")
            .map(|f| f["kind"].as_str().unwrap().to_string())
            .collect();
        let set = |k: &str| -> BTreeSet<String> {
            labels[&name][k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let (expect, allow) = (set("expect"), set("allow"));
        let missing: Vec<_> = expect.difference(&raised).collect();
        let false_alarms: Vec<_> = raised
            .iter()
            .filter(|k| !expect.contains(*k) && !allow.contains(*k))
            .collect();
        let verdict = if missing.is_empty() && false_alarms.is_empty() {
            "ok".to_string()
        } else {
            format!("missing {missing:?}, false alarms {false_alarms:?}")
        };
        println!(
            "{name:<28} {:<28} {:<50} {verdict}",
            expect.iter().cloned().collect::<Vec<_>>().join(","),
            raised.iter().cloned().collect::<Vec<_>>().join(",")
        );
        if verdict != "ok" {
            failures.push(format!("{name}: {verdict}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    db.cleanup().await;
}
