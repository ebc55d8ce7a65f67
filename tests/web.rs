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
