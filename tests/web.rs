//! The pages, parsed as HTML.

mod common;

use common::{TestDb, eager_runner, get, new_run, points, send};
use scraper::{Html, Selector};
use serde_json::json;
use trainlens::model::Batch;

fn texts(doc: &Html, sel: &str) -> Vec<String> {
    doc.select(&Selector::parse(sel).unwrap())
        .map(|e| e.text().collect::<String>().trim().to_string())
        .collect()
}

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

/// A run as `trainlens.torch.watch` logs it: per-layer series, histograms and
/// the model record (whose order is not the name order).
async fn watched_run(db: &common::TestDb, layers: &[&str]) -> uuid::Uuid {
    use trainlens::record::HistogramRecord;
    let run = db
        .store
        .create_run(&new_run("watch", "w", json!({})))
        .await
        .unwrap();
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
    db.store.ingest(run.id, &b, None).await.unwrap();
    run.id
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
    let plain = db
        .store
        .create_run(&new_run("watch", "plain", json!({})))
        .await
        .unwrap();
    let (_, page) = send(&app, get(&format!("/runs/{}", plain.id))).await;
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
    assert!(svgs(&doc, "script").is_empty());
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
