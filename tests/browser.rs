//! The pages in a real browser: headless Chromium over WebDriver
//! (chromedriver, driven with fantoccini), against `trainlens serve` running
//! in-process on 127.0.0.1 with the recorded fixture runs imported and
//! diagnosed. At 1280 and 390 px wide: the runs table lists the runs with
//! the badges the store says, its sort links and filter form work, a faulty
//! run's page shows its finding and links to the chart that marks it, the
//! smoothing control redraws the curves, a run with weight tensors and
//! feature maps shows the weight heatmap and a decoded image per channel
//! (the step slider loads another step), a running run's page shows a
//! point and a finding posted after it opened and the runs table the run's
//! new step and status, without a reload; nothing overflows the viewport
//! sideways and no JavaScript error is raised. Screenshots go to
//! `target/screenshots/` for a person to look at.
//!
//! Skipped (with a message) when chromedriver is missing — except under CI,
//! where that fails. `CHROMEDRIVER` and `CHROMIUM` override the paths.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    LiveServer, TestDb, eager_runner, fixture_files, free_port, post, post_json, post_loss, send,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use trainlens::model::Severity;

const CHROME_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-sync",
    "--disable-component-update",
];

/// Collects uncaught errors, unhandled rejections and `console.error` calls
/// into `window.__errors`; installed before any page script runs.
const ERROR_COLLECTOR: &str = "window.__errors = [];\
    window.addEventListener('error', e => window.__errors.push('error: ' + e.message));\
    window.addEventListener('unhandledrejection', e => window.__errors.push('rejection: ' + e.reason));\
    const __ce = console.error; console.error = (...a) => { window.__errors.push('console: ' + a.join(' ')); __ce(...a); };";

fn tool(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// chromedriver, killed when the test ends however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Chrome DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({"cmd": self.0, "params": self.1});
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

async fn wait_for_port(port: u16, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 10 s) until the page at a URL containing `part` has loaded.
async fn loaded(c: &Client, part: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = c.current_url().await.unwrap();
        let state = js(c, "return document.readyState").await;
        if url.as_str().contains(part) && state == "complete" {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not load {part}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the first element matching `css`.
async fn click(c: &Client, css: &str) {
    click_on(c, Locator::Css(css)).await;
}

/// Clicks the first element `at` finds.
async fn click_on(c: &Client, at: Locator<'_>) {
    c.find(at).await.unwrap().click().await.unwrap();
}

/// What `script` returns, run in the page without arguments.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Picks `value` in the `<select>` matching `css`.
async fn select(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap().trim().to_string());
    }
    out
}

/// The `points` of the loss chart's polylines, read in one script (the
/// chart may be swapped for a redrawn one meanwhile).
async fn curve_points(c: &Client) -> Vec<String> {
    js_strings(
        c,
        "return [...document.querySelectorAll('figure#chart-loss svg polyline')]\
         .map(p => p.getAttribute('points'));",
    )
    .await
}

/// The array of strings `script` returns (a non-string as `""`).
async fn js_strings(c: &Client, script: &str) -> Vec<String> {
    let v = js(c, script).await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect()
}

async fn screenshot(c: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The page's errors so far (see [`ERROR_COLLECTOR`]) and its horizontal
/// overflow in pixels.
async fn page_health(c: &Client) -> (Vec<String>, i64) {
    let v = js(
        c,
        "return [window.__errors || ['collector missing'], \
             document.documentElement.scrollWidth - window.innerWidth];",
    )
    .await;
    let errors = v[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap_or_default().to_string())
        .collect();
    (errors, v[1].as_i64().unwrap())
}

async fn check_page(c: &Client, what: &str) {
    let (errors, overflow) = page_health(c).await;
    assert!(errors.is_empty(), "{what}: JavaScript errors: {errors:?}");
    assert!(
        overflow <= 0,
        "{what}: the page is {overflow} px wider than the viewport"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_headless_chromium() {
    let Some((_driver, c)) = browser().await else {
        return;
    };
    // The server, with every recorded run imported and diagnosed.
    let (db, router, runner) = imported_fixtures().await;
    // What each run's badge must say: its worst open finding, warning or worse.
    let mut worst: BTreeMap<String, Option<Severity>> = BTreeMap::new();
    for run in db
        .store
        .list_runs(&trainlens::model::RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
    {
        worst.insert(run.name, None);
    }
    for f in db
        .store
        .open_findings(Some("faults"), Severity::Warning)
        .await
        .unwrap()
    {
        let w = worst.get_mut(&f.run_name).unwrap();
        *w = (*w).max(Some(f.finding.severity));
    }
    assert!(worst.values().any(Option::is_none) && worst.values().any(Option::is_some));
    let views_run = views_run(&router).await;
    let server = LiveServer::serve(db.state()).await;
    let base = &server.base;

    let result = async {
        for width in [1280u32, 390] {
            c.set_window_size(width, 1000).await.unwrap();
            c.goto(&format!("{base}/?project=faults")).await.unwrap();
            // Every run, with the badge the store says.
            let names = texts(&c, "table.runs tbody td.name a").await;
            assert_eq!(names.len(), worst.len(), "{width}px: every run listed");
            let health = texts(&c, "table.runs tbody td.health").await;
            for (name, h) in names.iter().zip(&health) {
                let want = worst[name].map_or("OK".to_string(), |s| s.as_str().to_uppercase());
                assert!(
                    h.to_uppercase().starts_with(&want),
                    "{width}px: {name} shows {h:?}, wants {want}"
                );
            }
            let sparks = c
                .find_all(Locator::Css("table.runs td.spark svg"))
                .await
                .unwrap();
            assert_eq!(
                sparks.len(),
                names.len(),
                "{width}px: a loss sparkline per run"
            );
            screenshot(&c, &format!("runs-{width}")).await;
            check_page(&c, &format!("runs page at {width}px")).await;

            // Sort by name through the header link, then the other way.
            click(&c, "table.runs thead th:first-child a").await;
            let by_name = texts(&c, "table.runs tbody td.name a").await;
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(by_name, sorted, "{width}px: sorted by name");
            click(&c, "table.runs thead th:first-child a").await;
            sorted.reverse();
            assert_eq!(
                texts(&c, "table.runs tbody td.name a").await,
                sorted,
                "{width}px: reversed"
            );
            assert!(
                c.current_url()
                    .await
                    .unwrap()
                    .as_str()
                    .contains("sort=name&dir=desc")
            );

            // Filter with the form: critical runs only, then a name search.
            select(&c, "form.filters select[name=health]", "critical").await;
            click(&c, "form.filters button[type=submit]").await;
            // A click does not wait for the navigation it starts.
            loaded(&c, "health=critical").await;
            let critical: Vec<&String> = worst
                .iter()
                .filter(|(_, s)| **s == Some(Severity::Critical))
                .map(|(n, _)| n)
                .collect();
            let shown = texts(&c, "table.runs tbody td.name a").await;
            assert!(!critical.is_empty());
            assert_eq!(
                shown.len(),
                critical.len(),
                "{width}px: critical runs {shown:?}"
            );
            assert!(shown.iter().all(|n| critical.contains(&n)));
            let url = c.current_url().await.unwrap();
            assert!(
                url.as_str().contains("health=critical") && url.as_str().contains("sort=name"),
                "{url}"
            );
            check_page(&c, &format!("filtered runs page at {width}px")).await;

            // A faulty run's page shows its finding.
            c.goto(&format!("{base}/?project=faults&q=diverge-sgd"))
                .await
                .unwrap();
            assert_eq!(
                texts(&c, "table.runs tbody td.name a").await,
                ["dev-diverge-sgd-lr5"]
            );
            click(&c, "table.runs tbody td.name a").await;
            let kinds = texts(&c, "article.finding .kind").await;
            assert!(
                kinds.contains(&"divergence".to_string()),
                "{width}px: {kinds:?}"
            );
            assert!(texts(&c, "h1").await[0].starts_with("dev-diverge-sgd-lr5"));
            screenshot(&c, &format!("run-{width}")).await;
            check_page(&c, &format!("run page at {width}px")).await;

            // The divergence links to the loss chart, which marks its onset.
            let link = c
                .find(Locator::XPath(
                    "//article[.//span[@class='kind' and text()='divergence']]//a[@class='to-chart']",
                ))
                .await
                .unwrap();
            assert_eq!(link.attr("href").await.unwrap().as_deref(), Some("#chart-loss"));
            link.click().await.unwrap();
            assert!(c.current_url().await.unwrap().as_str().ends_with("#chart-loss"));
            let top = js(&c, "const r = document.getElementById('chart-loss').getBoundingClientRect();\
                     return [r.top, window.innerHeight];").await;
            let (top, height) = (top[0].as_f64().unwrap(), top[1].as_f64().unwrap());
            assert!(
                (-2.0..height / 2.0).contains(&top),
                "{width}px: the chart scrolled into view (top {top} of {height})"
            );
            let labels = texts(&c, "figure#chart-loss svg text").await;
            assert!(
                labels.iter().any(|t| t == "divergence"),
                "{width}px: the onset marked: {labels:?}"
            );
            screenshot(&c, &format!("run-chart-{width}")).await;

            // The smoothing control redraws the curves (in place, with JS).
            let before = curve_points(&c).await;
            select(&c, "form.chart-controls select[name=smooth]", "0.95").await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while curve_points(&c).await == before {
                assert!(
                    Instant::now() < deadline,
                    "{width}px: the smoothing control did not change the curve"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let url = c.current_url().await.unwrap();
            assert!(url.as_str().contains("smooth=0.95"), "{url}");
            let href = c
                .find(Locator::Css("figure#chart-loss a[data-ext=csv]"))
                .await
                .unwrap()
                .attr("href")
                .await
                .unwrap()
                .unwrap_or_default();
            assert!(href.contains("smooth=0.95"), "{href}");
            // Without JavaScript the same view is a reload away.
            c.goto(url.as_str()).await.unwrap();
            assert_eq!(curve_points(&c).await.len(), before.len());
            check_page(&c, &format!("smoothed run page at {width}px")).await;

            // A running run's page and the runs table follow new data
            // without a reload.
            live_updates(&c, base, &router, &runner, width).await;

            // A run with weight tensors and feature maps: the heatmap, a
            // cell per channel, every image decoded; the slider loads a step.
            c.goto(&format!("{base}/runs/{views_run}#weights"))
                .await
                .unwrap();
            loaded(&c, &views_run).await;
            assert_eq!(
                c.find_all(Locator::Css("#weights figure.weights svg image"))
                    .await
                    .unwrap()
                    .len(),
                1,
                "{width}px: the weight heatmap"
            );
            assert_eq!(
                texts(&c, "#feature-maps figure.fmap figcaption span:first-child").await,
                ["channel 0", "channel 1", "channel 2", "channel 3"],
                "{width}px: a cell per channel"
            );
            let broken = js(&c, "return [...document.querySelectorAll('#feature-maps img')].filter(i => !i.complete || i.naturalWidth === 0).length").await;
            assert_eq!(broken, json!(0), "{width}px: every feature map decodes");
            screenshot(&c, &format!("views-{width}")).await;
            check_page(&c, &format!("views run page at {width}px")).await;
            js(&c, "const r = document.querySelector('#feature-maps input[type=range]'); r.value = 0; r.dispatchEvent(new Event('change'));").await;
            loaded(&c, "image_step=0").await;
            assert_eq!(
                texts(&c, "#feature-maps form.steps output").await,
                ["0"],
                "{width}px: the slider's step"
            );
            check_page(&c, &format!("views run page at step 0, {width}px")).await;
            c.goto(&format!("{base}/runs/{views_run}?image=inputs%2Fsample#feature-maps"))
                .await
                .unwrap();
            let png = js(&c, "const i = document.querySelector('#feature-maps img'); return i && i.complete ? i.naturalWidth : -1").await;
            assert_eq!(png, json!(1), "{width}px: the logged PNG is served");
            check_page(&c, &format!("PNG image at {width}px")).await;
        }
    }
    .await;
    finish(c, server, db).await;
    result
}

/// A run with two steps of a weight matrix, of a 4-channel feature map and a
/// PNG image, for the weight heatmap and the feature maps; returns its id.
async fn views_run(router: &axum::Router) -> String {
    const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
    let (status, run) = send(
        router,
        post_json(
            "/api/v1/runs",
            &json!({"project":"views","name":"views <demo>"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let mut lines = Vec::new();
    for step in [0u64, 100] {
        let w: Vec<Value> = (0..16 * 12)
            .map(|i| {
                if step == 100 && i == 7 {
                    json!("NaN")
                } else {
                    json!(((i * 37 % 23) as f64 - 11.0) / 11.0 * (1.0 + step as f64 / 100.0))
                }
            })
            .collect();
        lines.push(
            json!({"type":"tensor","step":step,"key":"weights/fc1","shape":[16,12],"values":w}),
        );
        let f: Vec<f64> = (0..4 * 6 * 6)
            .map(|i| ((i % 6) * (i / 6 % 6)) as f64 + step as f64)
            .collect();
        lines.push(
            json!({"type":"image","step":step,"key":"features/conv1","shape":[4,6,6],"values":f}),
        );
    }
    lines.push(json!({"type":"image","step":100,"key":"inputs/sample","png":PNG_1X1}));
    let body: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    let (status, out) = send(
        router,
        post(
            &format!("/api/v1/runs/{id}/records"),
            "application/x-ndjson",
            body,
        ),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    id
}

/// Waits (up to 15 s) until `script` returns `want`.
async fn until_js(c: &Client, script: &str, want: Value, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = js(c, script).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {got} (want {want})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Until the page's live marker shows (its event stream is open).
async fn stream_open(c: &Client, what: &str) {
    until_js(
        c,
        "const m = document.getElementById('live'); return !!m && !m.hidden;",
        json!(true),
        what,
    )
    .await;
}

/// A running run's page shows a point and then a finding posted after it
/// opened, and the runs table the run's new step and status — all without
/// a reload (a variable set on the page survives).
async fn live_updates(
    c: &Client,
    base: &str,
    router: &axum::Router,
    runner: &trainlens::runner::Runner,
    width: u32,
) {
    let project = format!("live-{width}");
    let (status, run) = send(
        router,
        post_json(
            "/api/v1/runs",
            &json!({"project": project, "name": format!("live <run> {width}")}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let steps: Vec<u64> = (0..100).collect();
    let values: Vec<f64> = steps
        .iter()
        .map(|s| 2.0 * (-(*s as f64) / 40.0).exp() + 0.1)
        .collect();
    post_loss(router, &id, &steps, json!(values)).await;
    runner.diagnose(id.parse().unwrap()).await.unwrap();

    c.goto(&format!("{base}/runs/{id}")).await.unwrap();
    loaded(c, &id).await;
    stream_open(c, &format!("{width}px: the run page's stream")).await;
    js(c, "window.__same_page = true;").await;
    const POINTS: &str = "const r = [...document.querySelectorAll('#series tbody tr')]\
        .find(r => r.cells[0].textContent.trim() === 'train/loss');\
        return r ? r.cells[1].textContent.trim() : null;";
    assert_eq!(js(c, POINTS).await, json!("100"));
    assert!(texts(c, "article.finding .kind").await.is_empty());
    let before = curve_points(c).await;

    post_loss(router, &id, &[100], json!([0.1])).await;
    until_js(
        c,
        POINTS,
        json!("101"),
        &format!("{width}px: the new point"),
    )
    .await;
    assert_ne!(
        curve_points(c).await,
        before,
        "{width}px: the loss chart redrawn"
    );

    // A fault, diagnosed by the worker: the finding shows up.
    post_loss(router, &id, &[101, 102], json!(["NaN", "NaN"])).await;
    runner.diagnose(id.parse().unwrap()).await.unwrap();
    until_js(
        c,
        "return [...document.querySelectorAll('article.finding .kind')].map(k => k.textContent.trim());",
        json!(["divergence"]),
        &format!("{width}px: the new finding"),
    )
    .await;
    let same = js(c, "return window.__same_page === true;").await;
    assert_eq!(same, json!(true), "{width}px: no reload");
    screenshot(c, &format!("live-run-{width}")).await;
    check_page(c, &format!("live run page at {width}px")).await;

    // The runs table: the row follows the run's step and status.
    c.goto(&format!("{base}/?project={project}")).await.unwrap();
    loaded(c, &project).await;
    stream_open(c, &format!("{width}px: the runs table's stream")).await;
    js(c, "window.__same_page = true;").await;
    const ROW: &str = "const r = document.querySelector('table.runs tbody tr');\
        return r ? [r.cells[2].textContent.trim(), r.cells[4].textContent.trim()] : null;";
    assert_eq!(js(c, ROW).await, json!(["running", "102"]));
    // A run ticked for comparing stays ticked across the refreshes.
    click(c, "table.runs tbody input[type=checkbox]").await;
    const TICKED: &str =
        "return document.querySelector('table.runs tbody input[type=checkbox]').checked;";
    assert_eq!(js(c, TICKED).await, json!(true));
    post_loss(router, &id, &[103], json!([0.1])).await;
    until_js(
        c,
        ROW,
        json!(["running", "103"]),
        &format!("{width}px: the row's step"),
    )
    .await;
    let (status, out) = send(
        router,
        post_json(
            &format!("/api/v1/runs/{id}/finish"),
            &json!({"status": "failed"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    until_js(
        c,
        ROW,
        json!(["failed", "103"]),
        &format!("{width}px: the row's status"),
    )
    .await;
    assert_eq!(js(c, TICKED).await, json!(true), "{width}px: still ticked");
    let same = js(c, "return window.__same_page === true;").await;
    assert_eq!(same, json!(true), "{width}px: no reload");
    screenshot(c, &format!("live-runs-{width}")).await;
    check_page(c, &format!("live runs page at {width}px")).await;
}

/// A fresh database with every recorded run imported through the API and
/// diagnosed; its router and runner.
async fn imported_fixtures() -> (TestDb, axum::Router, trainlens::runner::Runner) {
    let db = TestDb::sqlite().await;
    let router = db.app();
    let runner = eager_runner(&db.store, "http://trainlens.test");
    for path in fixture_files() {
        let (status, run) = send(
            &router,
            post(
                "/api/v1/import",
                "application/x-ndjson",
                std::fs::read(&path).unwrap(),
            ),
        )
        .await;
        assert_eq!(status, 201, "{}: {run}", path.display());
        let id: uuid::Uuid = run["id"].as_str().unwrap().parse().unwrap();
        runner.diagnose(id).await.unwrap();
    }
    (db, router, runner)
}

/// Ends a browser test: closes the session, stops the server, drops the
/// database.
async fn finish(c: Client, server: LiveServer, db: TestDb) {
    c.close().await.unwrap();
    server.stop().await;
    db.cleanup().await;
}

/// chromedriver and a headless Chromium with the error collector
/// installed, or `None` (after saying so) when chromedriver is missing
/// outside CI.
async fn browser() -> Option<(Driver, Client)> {
    let driver_path = tool("CHROMEDRIVER", "/usr/bin/chromedriver");
    if !driver_path.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromedriver at {} (or set CHROMEDRIVER)",
            driver_path.display()
        );
        eprintln!(
            "skipping the browser test: no chromedriver at {}",
            driver_path.display()
        );
        return None;
    }
    let port = free_port();
    let driver = Driver(
        Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_for_port(port, 20).await;
    let mut caps = serde_json::Map::new();
    let mut chrome = json!({ "args": CHROME_FLAGS });
    let chromium = tool("CHROMIUM", "/usr/bin/chromium");
    if chromium.is_file() {
        chrome["binary"] = json!(chromium);
    }
    caps.insert("goog:chromeOptions".into(), chrome);
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");
    c.issue_cmd(Cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": ERROR_COLLECTOR }),
    ))
    .await
    .expect("install the error collector");
    Some((driver, c))
}

/// The distinct stroke colours of the compare overlay's curves.
async fn overlay_colours(c: &Client) -> Vec<String> {
    js_strings(
        c,
        "return [...new Set([...document.querySelectorAll('figure#chart-compare svg polyline')]\
         .map(p => (p.getAttribute('stroke') || '').toLowerCase()).filter(s => s))];",
    )
    .await
}

/// Scrolls the element with `id` to the top of the window.
async fn scroll_to(c: &Client, id: &str) {
    c.execute(
        "document.getElementById(arguments[0]).scrollIntoView();",
        vec![json!(id)],
    )
    .await
    .unwrap();
}

/// The compare overlay's `<title>` (not rendered, so not an element's text).
async fn overlay_title(c: &Client) -> String {
    let v = js(c, "const t = document.querySelector('figure#chart-compare svg > title'); return t ? t.textContent : '';").await;
    v.as_str().unwrap_or_default().to_string()
}

/// Compare overlays two runs: ticked in the runs table, compared with the
/// form's button (no JavaScript needed), a curve and a legend entry per
/// run in colours of their own, the health of each, the parameters that
/// differ; another metric through the page's form; then the project's
/// hyperparameter view. At 1280 and 390 px, screenshots of both pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_overlays_two_runs() {
    let Some((_driver, c)) = browser().await else {
        return;
    };
    let (db, _router, _runner) = imported_fixtures().await;
    let server = LiveServer::serve(db.state()).await;
    let base = &server.base;
    const PICKED: [&str; 2] = ["dev-diverge-sgd-lr5", "dev-healthy-digits-adam"];

    let result = async {
        for width in [1280u32, 390] {
            c.set_window_size(width, 1000).await.unwrap();
            c.goto(&format!("{base}/?project=faults&sort=name&dir=asc"))
                .await
                .unwrap();
            for name in PICKED {
                let tick =
                    format!("//td[@class='name'][a[text()='{name}']]/input[@type='checkbox']");
                click_on(&c, Locator::XPath(&tick)).await;
            }
            click(&c, "form#compare button[type=submit]").await;
            loaded(&c, "/compare?").await;
            let url = c.current_url().await.unwrap();
            assert_eq!(url.as_str().matches("run=").count(), 2, "{url}");

            // The two runs, sorted by name as ticked, with their health.
            assert_eq!(
                texts(&c, "table.compared tbody td.name > a").await,
                PICKED,
                "{width}px"
            );
            let health = texts(&c, "table.compared tbody td.health").await;
            assert!(
                health[0].to_uppercase().starts_with("CRITICAL"),
                "{width}px: the diverging run's badge: {health:?}"
            );
            // A curve per run in its own colour, both named in the legend.
            let colours = overlay_colours(&c).await;
            assert!(colours.len() >= 2, "{width}px: {colours:?}");
            let labels = texts(&c, "figure#chart-compare svg text").await;
            for name in PICKED {
                assert!(
                    labels.iter().any(|t| t == name),
                    "{width}px: {name} in the legend: {labels:?}"
                );
            }
            // The config diff: the learning rates differ, the dataset not.
            let params = texts(&c, "table.diff tbody td.param").await;
            assert!(
                params.contains(&"lr".to_string()) && !params.contains(&"dataset".to_string()),
                "{width}px: {params:?}"
            );
            screenshot(&c, &format!("compare-{width}")).await;
            check_page(&c, &format!("compare page at {width}px")).await;
            scroll_to(&c, "params").await;
            screenshot(&c, &format!("compare-params-{width}")).await;

            // Another metric, with the page's form.
            let title = overlay_title(&c).await;
            select(&c, "form.compare-controls select[name=key]", "train/loss").await;
            click(&c, "form.compare-controls button[type=submit]").await;
            loaded(&c, "key=train%2Floss").await;
            assert_eq!(
                overlay_title(&c).await,
                "train/loss",
                "{width}px: was {title:?}"
            );
            assert!(overlay_colours(&c).await.len() >= 2);
            check_page(&c, &format!("compare page, train/loss, at {width}px")).await;

            // The project's hyperparameter view, from the compare page.
            click(&c, "p.crumbs a[href$='/params']").await;
            loaded(&c, "/projects/faults/params").await;
            let lines = c
                .find_all(Locator::Css("figure#chart-parallel svg g.run"))
                .await
                .unwrap()
                .len();
            assert!(lines >= 10, "{width}px: {lines} runs drawn");
            let rows = texts(&c, "table.relations tbody td.param").await;
            assert!(rows.contains(&"lr".to_string()), "{width}px: {rows:?}");
            screenshot(&c, &format!("params-{width}")).await;
            check_page(&c, &format!("hyperparameter view at {width}px")).await;
            scroll_to(&c, "importance").await;
            screenshot(&c, &format!("params-table-{width}")).await;
        }
    }
    .await;
    finish(c, server, db).await;
    result
}
