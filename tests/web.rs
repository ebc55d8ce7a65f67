//! The pages, parsed as HTML.

mod common;

use common::{TestDb, download, eager_runner, fetch, get, new_run, points, send, texts};
use scraper::{Html, Selector};
use serde_json::json;
use trainlens::model::Batch;

#[tokio::test]
async fn runs_list_and_run_page_show_the_diagnosis() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let new = new_run("vision", "<script>alert(1)</script>", json!({"lr": 5}));
    let run = db.store.create_run(&new).await.unwrap();
    let mut b = Batch::default();
    let pts = points(0..200, |s| {
        if s >= 90 {
            f64::NAN
        } else {
            2.0 - s as f64 / 100.0
        }
    });
    b.scalars.insert("train/loss".into(), pts);
    db.store.ingest(run.id, &b, None).await.unwrap();

    // Before the diagnosis.
    let (status, page) = send(&app, get(&format!("/runs/{}", run.id))).await;
    assert_eq!(status, 200);
    let doc = Html::parse_document(page.as_str().unwrap());
    assert!(
        texts(&doc, "section p.muted")
            .iter()
            .any(|t| t.starts_with("not diagnosed yet"))
    );

    eager_runner(&db.store, "http://t").tick().await.unwrap();

    let (_, page) = send(&app, get(&format!("/runs/{}", run.id))).await;
    let html = page.as_str().unwrap();
    assert!(
        !html.contains("<script>alert(1)</script>"),
        "names are escaped"
    );
    let doc = Html::parse_document(html);
    assert_eq!(texts(&doc, "h1")[0], "<script>alert(1)</script> running");
    assert_eq!(texts(&doc, "article.finding .kind"), ["divergence"]);
    assert_eq!(texts(&doc, "article.finding .onset"), ["from step 90"]);
    assert!(texts(&doc, "article.finding h3")[0].contains("NaN"));
    assert!(!texts(&doc, "article.finding ol.fixes li").is_empty());
    assert_eq!(texts(&doc, "table.series td.bad"), ["NaN"]);
    // The loss chart: the curve, its NaN points and the onset of the finding.
    let charts: Vec<String> = doc
        .select(&Selector::parse("figure.chart").unwrap())
        .map(|e| e.inner_html())
        .collect();
    assert_eq!(charts.len(), 1, "only a loss was logged");
    assert!(
        charts[0].contains("<svg")
            && charts[0].contains("Loss")
            && charts[0].contains("train/loss")
    );
    assert!(charts[0].contains("NaN / Inf") && charts[0].contains("divergence"));

    let (status, list) = send(&app, get("/?project=vision")).await;
    assert_eq!(status, 200);
    let doc = Html::parse_document(list.as_str().unwrap());
    assert_eq!(
        texts(&doc, "table.runs tbody tr td:first-child"),
        ["<script>alert(1)</script>"]
    );
    assert_eq!(texts(&doc, "table.runs .sev"), ["critical"]);

    let (status, page) = send(&app, get(&format!("/runs/{}", uuid::Uuid::new_v4()))).await;
    assert_eq!(status, 404);
    assert!(page.as_str().unwrap().contains("no run"));
    let (status, css) = send(&app, get("/static/style.css")).await;
    assert_eq!(status, 200);
    assert!(css.as_str().unwrap().contains(".finding"));
    db.cleanup().await;
}

/// Hints from the model record show apart from the findings, as hints:
/// no alarm, "No problem found" still says so, and each has the anchor a
/// finding it explains links to.
#[tokio::test]
async fn architecture_hints_show_as_hints_not_alarms() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let run = common::hinted_run(&db.store, "vision").await;
    eager_runner(&db.store, "http://t").tick().await.unwrap();
    let (_, page) = send(&app, get(&format!("/runs/{run}"))).await;
    let doc = Html::parse_document(page.as_str().unwrap());
    assert!(texts(&doc, "#diagnosis p.ok")[0].starts_with("No problem found"));
    assert_eq!(
        texts(&doc, "#hints article.finding.hint .kind"),
        ["architecture", "hyperparameters"]
    );
    assert_eq!(texts(&doc, "#hints article.finding .sev"), ["hint", "hint"]);
    assert!(texts(&doc, "#hints h3")[0].starts_with("Hints from the model"));
    // The anchor a finding caused by the hint links to.
    assert!(texts(&doc, "#finding-architecture h3")[0].contains("sigmoid"));
    assert!(
        texts(&doc, "details.more summary")
            .iter()
            .all(|t| !t.contains("weaker")),
        "hints are not weaker signals"
    );
    // No alarm anywhere: the runs list calls the run ok.
    let (_, list) = send(&app, get("/?project=vision")).await;
    let doc = Html::parse_document(list.as_str().unwrap());
    assert_eq!(texts(&doc, "table.runs .health"), ["ok"]);
    db.cleanup().await;
}

/// Creates a run of `project` with `tags`, `series` (key → values from step
/// 0) and, when given, an end status.
async fn seed(
    db: &TestDb,
    project: &str,
    name: &str,
    tags: &[&str],
    series: &[(&str, &[f64])],
    end: Option<trainlens::model::RunStatus>,
) -> uuid::Uuid {
    let mut new = new_run(project, name, json!({}));
    new.tags = tags.iter().map(|t| t.to_string()).collect();
    let run = db.store.create_run(&new).await.unwrap();
    let mut b = Batch::default();
    for (key, values) in series {
        let vals = values.to_vec();
        b.scalars.insert(
            key.to_string(),
            points(0..values.len() as u64, |s| vals[s as usize]),
        );
    }
    b.end = end.map(|s| (s, None));
    if !b.scalars.is_empty() || b.end.is_some() {
        db.store.ingest(run.id, &b, None).await.unwrap();
    }
    run.id
}

async fn page(app: &axum::Router, uri: &str) -> Html {
    let (status, body) = send(app, get(uri)).await;
    assert_eq!(status, 200, "{uri}: {body}");
    Html::parse_document(body.as_str().unwrap())
}

fn names(doc: &Html) -> Vec<String> {
    texts(doc, "table.runs tbody td.name a")
}

/// The `href` of the first link matching `sel`, as a request path.
fn link(doc: &Html, sel: &str) -> String {
    doc.select(&Selector::parse(sel).unwrap())
        .next()
        .unwrap_or_else(|| panic!("no {sel}"))
        .value()
        .attr("href")
        .unwrap()
        .to_string()
}

on_both_backends! {
    async fn runs_table_filters_sorts_and_pages(db: &TestDb) {
        use trainlens::model::RunStatus::*;
        let app = db.app();
        let loss: &[f64] = &[2.0, 1.5, 1.0, 0.7];
        seed(db, "p", "alpha", &["sgd", "base"], &[("train/loss", loss), ("val/loss", &[0.9, 0.5]), ("val/acc", &[0.6, 0.8])], Some(Finished)).await;
        seed(db, "p", "Beta", &["adam"], &[("loss", loss), ("val_loss", &[0.3]), ("val_accuracy", &[0.9])], Some(Failed)).await;
        seed(db, "p", "gamma", &["sgd_x"], &[("train/loss", &[1.0, f64::NAN]), ("val/loss", &[1.0, f64::NAN])], None).await;
        seed(db, "p", "delta", &[], &[], None).await;
        seed(db, "other", "omega", &["sgd"], &[], None).await;

        // Newest first by default; the other project's run is not listed.
        let doc = page(&app, "/?project=p").await;
        assert_eq!(names(&doc), ["delta", "gamma", "Beta", "alpha"]);
        assert_eq!(texts(&doc, "table.runs tbody td:nth-child(3)"), ["running", "running", "failed", "finished"]);
        // Last values by role, whatever the tool named them; NaN shown as such.
        assert_eq!(texts(&doc, "table.runs tbody td:nth-child(6)"), ["", "NaN", "0.3", "0.5"]);
        assert_eq!(texts(&doc, "table.runs tbody td:nth-child(7)"), ["", "", "0.9", "0.8"]);
        assert_eq!(texts(&doc, "table.runs tbody td:nth-child(5)"), ["", "1", "3", "3"]);
        // A sparkline for each run with a training loss, the NaN marked.
        let sparks: Vec<String> = doc
            .select(&Selector::parse("table.runs tbody td.spark").unwrap())
            .map(|e| e.inner_html())
            .collect();
        assert!(sparks[0].is_empty());
        assert!(sparks[1].contains("<svg") && sparks[1].contains("nonfinite"));
        assert!(sparks[2].contains("<path") && sparks[3].contains("<path"));

        // Sorting: val loss ascending puts the missing and the NaN last.
        // (ties: newest first).
        let doc = page(&app, "/?project=p&sort=val_loss&dir=asc").await;
        assert_eq!(names(&doc), ["Beta", "alpha", "delta", "gamma"]);
        let doc = page(&app, "/?project=p&sort=val_loss&dir=desc").await;
        assert_eq!(names(&doc), ["alpha", "Beta", "delta", "gamma"]);
        let doc = page(&app, "/?project=p&sort=name&dir=asc").await;
        assert_eq!(names(&doc), ["Beta", "alpha", "delta", "gamma"]);
        let doc = page(&app, "/?project=p&sort=val_acc").await;
        assert_eq!(names(&doc), ["Beta", "alpha", "delta", "gamma"]);
        let doc = page(&app, "/?project=p&sort=step").await;
        assert_eq!(names(&doc)[..2], ["Beta", "alpha"]);
        for sort in ["status", "health", "duration", "started"] {
            let doc = page(&app, &format!("/?project=p&sort={sort}&dir=asc")).await;
            assert_eq!(names(&doc).len(), 4, "{sort}");
        }
        // The header links sort, and the current column's link reverses it.
        let doc = page(&app, "/?project=p").await;
        let by_name = link(&doc, "table.runs thead th:first-child a");
        assert_eq!(by_name, "/?project=p&sort=name&dir=asc");
        let doc = page(&app, &by_name).await;
        assert_eq!(link(&doc, "table.runs thead th:first-child a"), "/?project=p&sort=name&dir=desc");

        // Filters: status, tag (whole tags only), name search, health.
        let doc = page(&app, "/?project=p&status=failed").await;
        assert_eq!(names(&doc), ["Beta"]);
        let doc = page(&app, "/?project=p&tag=sgd").await;
        assert_eq!(names(&doc), ["alpha"]);
        let doc = page(&app, "/?tag=sgd").await;
        assert_eq!(names(&doc), ["omega", "alpha"]);
        let doc = page(&app, "/?project=p&q=ETA&status=&health=&tag=").await;
        assert_eq!(names(&doc), ["Beta"]);
        let doc = page(&app, "/?project=p&q=%25").await;
        assert!(names(&doc).is_empty(), "% is matched literally");
        assert_eq!(texts(&doc, "p.empty"), ["No run matches."]);
        let doc = page(&app, "/?project=p&health=ok").await;
        assert_eq!(names(&doc).len(), 4, "nothing diagnosed yet");
        eager_runner(&db.store, "http://t").tick().await.unwrap();
        let doc = page(&app, "/?project=p&health=critical").await;
        assert_eq!(names(&doc), ["gamma"]);
        assert_eq!(texts(&doc, "table.runs .sev"), ["critical"]);
        let doc = page(&app, "/?project=p&sort=health").await;
        assert_eq!(names(&doc)[0], "gamma", "the sickest first");
        let doc = page(&app, "/?project=p&health=ok").await;
        assert!(!names(&doc).contains(&"gamma".to_string()));

        // Bad words are refused.
        for bad in ["status=done", "sort=colour", "dir=up", "page=0", "health=bad"] {
            let (status, _) = send(&app, get(&format!("/?{bad}"))).await;
            assert_eq!(status, 400, "{bad}");
        }
    }

    async fn runs_table_pages_in_sql(db: &TestDb) {
        let app = db.app();
        for i in 0..120 {
            seed(db, "big", &format!("run-{i:03}"), &[], &[], None).await;
        }
        let doc = page(&app, "/?project=big&sort=name&dir=asc").await;
        assert_eq!(names(&doc).len(), 50);
        assert_eq!(names(&doc)[0], "run-000");
        assert!(texts(&doc, "p.pager")[0].starts_with("runs 1–50 of 120"));
        let next = link(&doc, "a[rel=next]");
        assert_eq!(next, "/?project=big&sort=name&dir=asc&page=2");
        let doc = page(&app, "/?project=big&sort=name&dir=asc&page=3").await;
        assert_eq!(names(&doc).len(), 20);
        assert_eq!(names(&doc)[0], "run-100");
        assert!(doc.select(&Selector::parse("a[rel=next]").unwrap()).next().is_none());
        assert_eq!(link(&doc, "a[rel=prev]"), "/?project=big&sort=name&dir=asc&page=2");
        let doc = page(&app, "/?project=big&page=9").await;
        assert!(names(&doc).is_empty());
        assert_eq!(texts(&doc, "p.empty"), ["No run matches."]);
    }
}

/// Every user-supplied string — project, run name, tag, series key — is
/// escaped in the page's HTML and SVG: parsed, no element or attribute
/// comes from them.
#[tokio::test]
async fn runs_page_escapes_what_users_send() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let evil = ["<script>alert(1)</script>", "\"><svg onload=alert(1)>"];
    for (i, name) in evil.iter().enumerate() {
        let project = evil[1 - i];
        seed(
            &db,
            project,
            name,
            &evil,
            &[(name, &[1.0, 0.5]), ("train/loss", &[1.0, 0.5])],
            None,
        )
        .await;
    }
    for uri in [
        "/".to_string(),
        format!("/?project={}", urlencode(evil[0])),
        format!(
            "/?project={}&q={}&tag={}",
            urlencode(evil[1]),
            urlencode(evil[1]),
            urlencode(evil[1])
        ),
    ] {
        let (status, body) = send(&app, get(&uri)).await;
        assert_eq!(status, 200);
        let html = body.as_str().unwrap();
        let doc = Html::parse_document(html);
        assert_only_our_script(&doc);
        for el in doc.select(&Selector::parse("*").unwrap()) {
            assert!(
                el.value().attrs().all(|(k, _)| !k.starts_with("on")),
                "{uri}: an event handler attribute on <{}>",
                el.value().name()
            );
        }
        // The only SVGs are the sparklines, and they hold no text.
        for svg in doc.select(&Selector::parse("svg").unwrap()) {
            assert_eq!(svg.value().attr("class"), Some("spark"), "{uri}");
            assert!(svg.text().collect::<String>().is_empty());
        }
        // The strings are there, as text.
        let text: String = doc.root_element().text().collect();
        for e in evil {
            assert!(text.contains(e), "{uri}: {e} shown as text");
        }
        // Also in the values of the form and of the links.
        for input in doc.select(&Selector::parse("form.filters input").unwrap()) {
            let v = input.value().attr("value").unwrap_or_default();
            assert!(v.is_empty() || evil.contains(&v) || !v.contains('<'), "{v}");
        }
        assert!(!html.contains("<svg onload"), "{uri}");
    }
    db.cleanup().await;
}

/// `s` percent-encoded for a query string.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A run as `trainlens.torch.watch` logs it: per-layer series, histograms and
/// the model record (whose order is not the name order).
async fn watched_run(db: &common::TestDb, layers: &[&str]) -> uuid::Uuid {
    use trainlens::record::HistogramRecord;
    let run = db.create_run("watch", "w", json!({})).await;
    let mut b = Batch::default();
    b.scalars.insert(
        "train/loss".into(),
        points(0..300, |s| 2.0 / (1.0 + s as f64)),
    );
    for (i, layer) in layers.iter().enumerate() {
        let scale = 10f64.powi(-(i as i32));
        b.scalars.insert(
            format!("grad_norm/{layer}"),
            points((0..300).step_by(10), |s| {
                if i == 0 && s == 150 {
                    f64::NAN
                } else {
                    scale * (1.0 + s as f64 / 300.0)
                }
            }),
        );
        b.scalars.insert(
            format!("update_ratio/{layer}"),
            points((0..300).step_by(10), |_| 1e-3 * scale),
        );
        b.scalars.insert(
            format!("dead_frac/{layer}"),
            points((0..300).step_by(10), |s| s as f64 / 300.0),
        );
        for step in (0..300).step_by(50) {
            for family in ["weights", "grads"] {
                b.histograms.push(HistogramRecord {
                    step,
                    key: format!("{family}/{layer}"),
                    edges: vec![-1.0, -0.5, 0.0, 0.5, 1.0],
                    counts: vec![1, 5, 5, 1],
                    nonfinite: u64::from(step == 200 && i == 0),
                });
            }
        }
    }
    b.model = Some(
        serde_json::from_value(json!({
            "layers": layers.iter().map(|l| json!({"name": l})).collect::<Vec<_>>()
        }))
        .unwrap(),
    );
    db.store.ingest(run, &b, None).await.unwrap();
    run
}

/// The selected histogram key (its link's title).
fn current_key(doc: &Html) -> String {
    let sel = Selector::parse("nav.keys a.current").unwrap();
    let links: Vec<_> = doc.select(&sel).collect();
    assert_eq!(links.len(), 1);
    links[0].value().attr("title").unwrap().to_string()
}

fn svgs(doc: &Html, sel: &str) -> Vec<String> {
    doc.select(&Selector::parse(sel).unwrap())
        .map(|e| e.html())
        .collect()
}

#[tokio::test]
async fn run_page_shows_gradient_flow_and_distributions() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let id = watched_run(&db, &["conv1", "fc2", "fc10", "head"]).await;
    let (status, page) = send(&app, get(&format!("/runs/{id}"))).await;
    assert_eq!(status, 200);
    let doc = Html::parse_document(page.as_str().unwrap());
    for anchor in ["gradient-flow", "update-ratio", "units", "distributions"] {
        assert_eq!(
            svgs(&doc, &format!("section#{anchor}")).len(),
            1,
            "{anchor}"
        );
    }
    // The heatmap: one row group per layer, in the model's order, with the
    // NaN cell in its colour, a legend and a title for screen readers.
    let heat = svgs(&doc, "section#gradient-flow figure.heatmap svg");
    assert_eq!(heat.len(), 1);
    let rows = texts(&doc, "section#gradient-flow figure.heatmap svg g > title");
    assert_eq!(rows, ["conv1", "fc2", "fc10", "head"]);
    assert!(heat[0].contains(trainlens::charts::heatmap::NONFINITE));
    assert!(heat[0].contains("NaN / Inf") && heat[0].contains("log scale"));
    assert!(texts(&doc, "section#gradient-flow svg > title")[0].contains("Gradient flow"));
    assert_eq!(
        svgs(&doc, "section#gradient-flow figure.chart svg").len(),
        2,
        "and the lines"
    );
    assert!(
        texts(&doc, "section#update-ratio svg")
            .join(" ")
            .contains("healthy")
    );
    assert_eq!(
        svgs(&doc, "section#units figure.heatmap svg").len(),
        1,
        "dead only"
    );
    // Distributions: weights first, input side first; the bands and the
    // offset view of the first key, and its non-finite count.
    assert_eq!(texts(&doc, "nav.keys .family"), ["weights/", "grads/"]);
    let keys = texts(&doc, "section#distributions nav.keys a");
    assert_eq!(keys[..4], ["conv1", "fc2", "fc10", "head"]);
    assert_eq!(keys.len(), 8);
    assert_eq!(current_key(&doc), "weights/conv1");
    let bands = svgs(&doc, "section#distributions figure.bands svg");
    assert!(bands[0].matches("<polygon").count() >= 4);
    assert!(svgs(&doc, "section#distributions figure.ridge svg")[0].contains("step 250"));
    assert!(texts(&doc, "section#distributions p.bad")[0].contains("1 non-finite value"));

    // The key picker is a link: another key, no JavaScript.
    let href = doc
        .select(&Selector::parse("nav.keys a").unwrap())
        .find(|a| a.value().attr("title") == Some("grads/head"))
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_string();
    assert_eq!(href, "?hist=grads/head#distributions");
    let (status, page) = send(&app, get(&format!("/runs/{id}?hist=grads%2Fhead"))).await;
    assert_eq!(status, 200);
    let doc = Html::parse_document(page.as_str().unwrap());
    assert_eq!(current_key(&doc), "grads/head");
    assert!(texts(&doc, "section#distributions p.bad").is_empty());
    assert!(texts(&doc, "figure.bands svg > title")[0].starts_with("grads/head"));

    // A run without watch: the empty states say what to log.
    let plain = db.create_run("watch", "plain", json!({})).await;
    let (_, page) = send(&app, get(&format!("/runs/{plain}"))).await;
    let doc = Html::parse_document(page.as_str().unwrap());
    for anchor in ["gradient-flow", "update-ratio", "units", "distributions"] {
        let empty = texts(&doc, &format!("section#{anchor} p.empty"));
        assert!(
            empty[0].contains("trainlens.torch.watch(run, model)"),
            "{anchor}"
        );
    }
}

#[tokio::test]
async fn layer_names_are_escaped_in_the_charts() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let id = watched_run(&db, &["<script>alert(1)</script>", "fc\"&'"]).await;
    let (status, page) = send(&app, get(&format!("/runs/{id}"))).await;
    assert_eq!(status, 200);
    let html = page.as_str().unwrap();
    assert!(!html.contains("<script>"), "no raw script tag anywhere");
    let doc = Html::parse_document(html);
    assert_only_our_script(&doc);
    let rows = texts(&doc, "section#gradient-flow figure.heatmap svg g > title");
    assert_eq!(rows, ["<script>alert(1)</script>", "fc\"&'"]);
    assert_eq!(current_key(&doc), "weights/<script>alert(1)</script>");
    let (status, _) = send(
        &app,
        get(&format!(
            "/runs/{id}?hist=weights%2F%3Cscript%3Ealert(1)%3C%2Fscript%3E"
        )),
    )
    .await;
    assert_eq!(status, 200);
}

/// The only scripts are the page's own, from /static/, with no inline body.
fn assert_only_our_script(doc: &Html) {
    for script in doc.select(&Selector::parse("script").unwrap()) {
        let src = script.value().attr("src").unwrap_or_default();
        assert!(
            ["/static/charts.js", "/static/views.js", "/static/live.js"].contains(&src),
            "unexpected script {src:?}"
        );
        assert!(script.text().collect::<String>().trim().is_empty());
    }
}

/// A fresh database with [`diverging_run`], and its app.
async fn diverging() -> (TestDb, axum::Router, uuid::Uuid) {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let id = diverging_run(&db).await;
    (db, app, id)
}

/// A run with a timed training loss that turns NaN (a divergence), a
/// validation loss and a learning rate, diagnosed.
async fn diverging_run(db: &TestDb) -> uuid::Uuid {
    let run = db.create_run("charts", "diverging", json!({})).await;
    let mut b = Batch::default();
    let timed = |steps: std::ops::Range<u64>, f: &dyn Fn(u64) -> f64| {
        points(steps, f)
            .into_iter()
            .map(|mut p| {
                p.time = Some(1_700_000_000.5 + p.step as f64 * 2.0);
                p
            })
            .collect::<Vec<_>>()
    };
    b.scalars.insert(
        "train/loss".into(),
        timed(0..400, &|s| {
            if s >= 300 {
                f64::NAN
            } else {
                2.0 - s as f64 / 200.0 + if s % 2 == 0 { 0.05 } else { -0.05 }
            }
        }),
    );
    b.scalars.insert(
        "val/loss".into(),
        timed(0..300, &|s| 2.0 - s as f64 / 250.0),
    );
    b.scalars.insert("lr".into(), timed(0..400, &|_| 0.1));
    db.store.ingest(run, &b, None).await.unwrap();
    eager_runner(&db.store, "http://t").tick().await.unwrap();
    run
}

fn figure(doc: &Html, id: &str) -> Option<String> {
    doc.select(&Selector::parse(&format!("figure#{id}")).unwrap())
        .next()
        .map(|e| e.html())
}

/// The polylines of the chart `id` (plotters draws each curve as one).
fn polylines(doc: &Html, id: &str) -> Vec<String> {
    doc.select(&Selector::parse(&format!("figure#{id} svg polyline")).unwrap())
        .map(|e| e.value().attr("points").unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn line_charts_follow_the_view_in_the_query() {
    let (db, app, id) = diverging().await;

    // Default: TensorBoard's 0.6, by step, each chart's own y scale.
    let doc = page(&app, &format!("/runs/{id}")).await;
    let selected = |doc: &Html, name: &str| {
        texts(
            doc,
            &format!("form.chart-controls select[name={name}] option[selected]"),
        )
    };
    assert_eq!(selected(&doc, "smooth"), ["0.6"]);
    assert_eq!(selected(&doc, "y"), ["auto"]);
    assert_eq!(selected(&doc, "x"), ["step"]);
    let form = doc
        .select(&Selector::parse("form.chart-controls").unwrap())
        .next()
        .unwrap();
    assert_eq!(form.value().attr("method"), Some("get"));
    let loss = figure(&doc, "chart-loss").unwrap();
    assert!(loss.contains("train/loss") && loss.contains("val/loss") && loss.contains("\nstep\n"));
    assert!(loss.contains("weight 0.6"), "{loss}");
    let smoothed = polylines(&doc, "chart-loss");
    // The learning rate is drawn, never smoothed; no accuracy: what to log.
    assert!(figure(&doc, "chart-lr").unwrap().contains("Learning rate"));
    assert!(!figure(&doc, "chart-lr").unwrap().contains("weight 0.6"));
    assert_eq!(
        texts(&doc, "figure.chart-empty#chart-accuracy p.empty"),
        ["No accuracy logged: log train/acc and val/acc to see the accuracy."]
    );
    // Hover read-out: titles with step and value, the NaN included.
    let readouts = texts(&doc, "figure#chart-loss svg g.hover rect title");
    assert!(readouts.len() > 50, "{}", readouts.len());
    assert!(
        readouts
            .iter()
            .any(|t| t.contains("train/loss: NaN at step"))
    );
    assert!(readouts[0].starts_with("train/loss: ") && readouts[0].contains("smoothed"));

    // Smoothing off: one curve fewer, the raw ones unchanged.
    let doc = page(&app, &format!("/runs/{id}?smooth=0")).await;
    assert_eq!(selected(&doc, "smooth"), ["off"]);
    let raw = polylines(&doc, "chart-loss");
    assert!(
        raw.len() < smoothed.len(),
        "{} vs {}",
        raw.len(),
        smoothed.len()
    );
    assert!(!figure(&doc, "chart-loss").unwrap().contains("smoothed"));
    // Heavier smoothing: another curve.
    let doc = page(&app, &format!("/runs/{id}?smooth=0.95")).await;
    assert_ne!(polylines(&doc, "chart-loss"), smoothed);
    // A weight that is not one of the choices is kept in the control.
    let doc = page(&app, &format!("/runs/{id}?smooth=0.77")).await;
    assert_eq!(selected(&doc, "smooth"), ["0.77"]);

    // Log y, wall time on x (h:mm:ss since the start), together.
    let doc = page(&app, &format!("/runs/{id}?y=log&x=time")).await;
    let loss = figure(&doc, "chart-loss").unwrap();
    assert!(loss.contains("log-scale") && loss.contains("time since start"));
    assert!(
        loss.contains("0:10:00"),
        "300 steps at 2 s: the onset at 10 min"
    );
    assert!(
        loss.contains("divergence"),
        "the onset marked on the time axis too"
    );
    assert_eq!(selected(&doc, "y"), ["log"]);
    assert_eq!(selected(&doc, "x"), ["wall time"]);
    // The downloads and the histogram links keep the view.
    let href = link(&doc, "figure#chart-loss a[data-ext=svg]");
    assert_eq!(href, format!("/runs/{id}/charts/loss.svg?y=log&x=time"));
    let doc = page(&app, &format!("/runs/{id}?y=linear")).await;
    assert!(!figure(&doc, "chart-loss").unwrap().contains("log-scale"));

    // Bad words are refused, as on the runs page.
    for bad in ["smooth=1", "smooth=-0.5", "smooth=abc", "y=sqrt", "x=epoch"] {
        let (status, _) = send(&app, get(&format!("/runs/{id}?{bad}"))).await;
        assert_eq!(status, 400, "{bad}");
    }
    db.cleanup().await;
}

#[tokio::test]
async fn findings_link_to_the_chart_that_shows_them() {
    let (db, app, id) = diverging().await;
    let doc = page(&app, &format!("/runs/{id}")).await;
    let kinds = texts(&doc, "article.finding .kind");
    assert_eq!(kinds[0], "divergence", "{kinds:?}");
    assert_eq!(link(&doc, "article.finding a.to-chart"), "#chart-loss");
    let loss = figure(&doc, "chart-loss").unwrap();
    assert!(
        loss.contains("divergence"),
        "the onset is marked on the chart"
    );

    // Gradient findings point at the per-layer gradient lines.
    let watched = watched_run(&db, &["conv1", "fc2"]).await;
    let doc = page(&app, &format!("/runs/{watched}")).await;
    assert!(
        figure(&doc, "chart-grad-norm")
            .unwrap()
            .contains("Gradient norm per layer")
    );
    assert!(
        figure(&doc, "chart-update-ratio")
            .unwrap()
            .contains("healthy")
    );
    assert!(figure(&doc, "chart-dead-units").is_some());
    db.cleanup().await;
}

#[tokio::test]
async fn every_line_chart_downloads_as_svg_and_csv() {
    let (db, app, id) = diverging().await;

    let svg = download(&app, &format!("/runs/{id}/charts/loss.svg"), "loss.svg").await;
    assert!(svg.starts_with("<svg") && svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("<title>Loss</title>") && svg.contains("<desc>"));
    // The same chart as on the page, for the same view.
    let doc = page(&app, &format!("/runs/{id}?smooth=0.9&x=time")).await;
    let (_, _, svg) = fetch(
        &app,
        &format!("/runs/{id}/charts/loss.svg?smooth=0.9&x=time"),
    )
    .await;
    assert_eq!(
        Html::parse_fragment(&svg)
            .select(&Selector::parse("polyline").unwrap())
            .map(|e| e.value().attr("points").unwrap_or_default().to_string())
            .collect::<Vec<_>>(),
        polylines(&doc, "chart-loss")
    );

    let (status, headers, csv) = fetch(&app, &format!("/runs/{id}/charts/loss.csv?smooth=0")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("key,step,time,value"));
    assert_eq!(lines.next(), Some("train/loss,0,1700000000.5,2.05"));
    assert!(csv.contains("\ntrain/loss,300,1700000600.5,NaN\n"));
    assert!(csv.contains("\nval/loss,0,1700000000.5,2.0\n"));
    assert_eq!(
        csv.lines().count(),
        1 + 400 + 300,
        "few enough points: all of them"
    );

    let (status, _, lr) = fetch(&app, &format!("/runs/{id}/charts/lr.csv")).await;
    assert_eq!(status, 200);
    assert!(lr.starts_with("key,step,time,value\nlr,0,"));
    // No accuracy: nothing to draw says what to log; the CSV is a header.
    let (status, _, body) = fetch(&app, &format!("/runs/{id}/charts/accuracy.svg")).await;
    assert_eq!(status, 404);
    assert!(body.contains("train/acc"), "{body}");
    let (status, _, body) = fetch(&app, &format!("/runs/{id}/charts/accuracy.csv")).await;
    assert_eq!((status, body.as_str()), (200, "key,step,time,value\n"));
    for (uri, want) in [
        (format!("/runs/{id}/charts/colour.svg"), 404),
        (format!("/runs/{id}/charts/loss.png"), 404),
        (format!("/runs/{id}/charts/loss"), 404),
        (format!("/runs/{id}/charts/dead-units.svg"), 404),
        (
            format!("/runs/{}/charts/loss.svg", uuid::Uuid::new_v4()),
            404,
        ),
        (format!("/runs/{id}/charts/loss.svg?smooth=7"), 400),
        (format!("/runs/{id}/charts/loss.csv?colour=x"), 400),
    ] {
        let (status, _, _) = fetch(&app, &uri).await;
        assert_eq!(status, want, "{uri}");
    }
    db.cleanup().await;
}

/// The heatmaps and the distributions have downloads too, linked from the
/// page, and hover read-outs of their cells and steps.
#[tokio::test]
async fn heatmaps_and_distributions_download_and_read_out() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let id = watched_run(&db, &["conv1", "head"]).await;
    let doc = page(&app, &format!("/runs/{id}")).await;
    let links = |sel: &str| -> Vec<String> {
        doc.select(&Selector::parse(sel).unwrap())
            .filter_map(|a| a.value().attr("href").map(str::to_string))
            .collect()
    };
    assert_eq!(
        links("figure#chart-grad-flow figcaption a"),
        [
            format!("/runs/{id}/charts/grad-flow.svg"),
            format!("/runs/{id}/charts/grad-flow.csv")
        ]
    );
    assert_eq!(links("figure#chart-dead-units figcaption a").len(), 2);
    assert_eq!(
        links("figure.bands figcaption a"),
        [
            format!("/runs/{id}/charts/distribution.svg?hist=weights%2Fconv1"),
            format!("/runs/{id}/charts/distribution.csv?hist=weights%2Fconv1")
        ]
    );
    assert_eq!(
        links("figure.ridge figcaption a"),
        [format!(
            "/runs/{id}/charts/histograms.svg?hist=weights%2Fconv1"
        )]
    );
    // Hover read-outs: a heatmap cell names its layer, steps and value; the
    // NaN cell says so; a distribution step reads out its percentiles.
    let heat = texts(&doc, "figure#chart-grad-flow svg g.hover title");
    assert!(
        heat.iter()
            .any(|t| t.starts_with("conv1, steps 150–") && t.ends_with("NaN/Inf")),
        "{heat:?}"
    );
    assert!(
        heat.iter()
            .any(|t| t.starts_with("head, steps 0–") && t.contains(": 0.1")),
        "{heat:?}"
    );
    let dist = texts(&doc, "figure.bands svg g.hover title");
    assert_eq!(dist.len(), 6, "one a histogram step");
    assert!(
        dist.iter()
            .any(|t| t.starts_with("step 200: median ") && t.ends_with(", 1 NaN/Inf")),
        "{dist:?}"
    );

    // Every link answers with what it says, the same SVG as on the page.
    let svg = download(
        &app,
        &format!("/runs/{id}/charts/grad-flow.svg"),
        "grad-flow.svg",
    )
    .await;
    let parsed = |svg: &str| svgs(&Html::parse_fragment(svg), "svg")[0].clone();
    assert_eq!(parsed(&svg), svgs(&doc, "figure#chart-grad-flow svg")[0]);
    let (status, headers, csv) = fetch(&app, &format!("/runs/{id}/charts/grad-flow.csv")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.starts_with("key,step,time,value\ngrad_norm/conv1,0,"),
        "{csv}"
    );
    assert!(csv.contains("\ngrad_norm/conv1,150,") && csv.contains(",NaN\n"));
    assert_eq!(
        csv.lines()
            .filter(|l| l.starts_with("grad_norm/head,"))
            .count(),
        30
    );
    let (status, _, csv) = fetch(&app, &format!("/runs/{id}/charts/dead-units.csv")).await;
    assert_eq!(status, 200);
    assert!(
        csv.lines().skip(1).all(|l| l.starts_with("dead_frac/")),
        "{csv}"
    );
    let (status, _, svg) = fetch(
        &app,
        &format!("/runs/{id}/charts/distribution.svg?hist=weights%2Fconv1"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(parsed(&svg), svgs(&doc, "figure.bands svg")[0]);
    let (status, _, svg) = fetch(
        &app,
        &format!("/runs/{id}/charts/histograms.svg?hist=grads%2Fhead"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(svg.contains("<title>grads/head: histograms</title>"));
    let (status, headers, csv) = fetch(
        &app,
        &format!("/runs/{id}/charts/distribution.csv?hist=weights%2Fconv1"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("key,step,lower,upper,count"));
    assert_eq!(lines.next(), Some("weights/conv1,0,-1.0,-0.5,1"));
    assert!(
        csv.contains("\nweights/conv1,200,,,1\n"),
        "the NaN count: {csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 6 * 4 + 1);

    // No such chart, key or run; a distribution needs its key.
    for (uri, want) in [
        (format!("/runs/{id}/charts/saturated-units.svg"), 404),
        (format!("/runs/{id}/charts/saturated-units.csv"), 200),
        (
            format!("/runs/{id}/charts/distribution.svg?hist=weights%2Fnope"),
            404,
        ),
        (format!("/runs/{id}/charts/distribution.svg"), 400),
        (format!("/runs/{id}/charts/histograms.csv?hist="), 400),
        (
            format!("/runs/{}/charts/grad-flow.svg", uuid::Uuid::new_v4()),
            404,
        ),
    ] {
        let (status, _, body) = fetch(&app, &uri).await;
        assert_eq!(status, want, "{uri}: {body}");
    }
    let (_, _, body) = fetch(&app, &format!("/runs/{id}/charts/distribution.svg")).await;
    assert!(
        body.contains("hist (a histogram key) is required"),
        "{body}"
    );
    db.cleanup().await;
}

/// Layer names reach the per-layer lines, their read-outs and downloads:
/// escaped in the SVG, as they are in the CSV's own quoting.
#[tokio::test]
async fn chart_downloads_escape_layer_names() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let evil = ["<script>alert(1)</script>", "\"><svg onload=alert(1)>"];
    let id = watched_run(&db, &evil).await;
    for uri in [
        format!("/runs/{id}"),
        format!("/runs/{id}?smooth=0.9&y=log&x=time"),
        // A histogram key from the URL goes back into the form, escaped.
        format!("/runs/{id}?hist={}&smooth=0.3", urlencode(evil[1])),
    ] {
        let (status, _, html) = fetch(&app, &uri).await;
        assert_eq!(status, 200);
        assert!(
            !html.contains("<script>") && !html.contains("<svg onload"),
            "{uri}"
        );
        let doc = Html::parse_document(&html);
        assert_only_our_script(&doc);
        for el in doc.select(&Selector::parse("*").unwrap()) {
            assert!(
                el.value().attrs().all(|(k, _)| !k.starts_with("on")),
                "{uri}"
            );
        }
        let readouts = texts(&doc, "figure#chart-grad-norm svg g.hover title").join("\n");
        for e in evil {
            assert!(
                readouts.contains(&format!("grad_norm/{e}: ")),
                "{uri}: {e} read out as text"
            );
        }
    }
    for chart in ["grad-norm", "update-ratio"] {
        let (status, _, svg) =
            fetch(&app, &format!("/runs/{id}/charts/{chart}.svg?smooth=0.5")).await;
        assert_eq!(status, 200, "{chart}");
        assert!(
            !svg.contains("<script>") && !svg.contains("<svg onload"),
            "{chart}"
        );
        let doc = Html::parse_fragment(&svg);
        assert_eq!(doc.select(&Selector::parse("script").unwrap()).count(), 0);
        for el in doc.select(&Selector::parse("*").unwrap()) {
            assert!(
                el.value().attrs().all(|(k, _)| !k.starts_with("on")),
                "{chart}"
            );
        }
        let text: String = doc.root_element().text().collect();
        assert!(
            evil.iter().all(|e| text.contains(e)),
            "{chart}: shown as text"
        );
        let (_, _, csv) = fetch(&app, &format!("/runs/{id}/charts/{chart}.csv")).await;
        let prefix = chart.replace('-', "_");
        let quoted = format!("\n\"{prefix}/\"\"><svg onload=alert(1)>\",0,");
        assert!(csv.contains(&quoted), "CSV quoting: {csv:.300}");
    }
    db.cleanup().await;
}
