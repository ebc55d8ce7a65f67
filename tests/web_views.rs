//! The run page's weight heatmap, feature maps, dataset and model panels,
//! fed through the HTTP API as record-format lines and read back as parsed
//! HTML: the chosen step is the one drawn, a feature map has a cell per
//! channel, a PNG image is served as one, every key and layer name is
//! escaped, each view without data says what to log, and each chart shown
//! downloads from the links beside it (SVG, CSV, PNG).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{
    ONLOAD, SCRIPT, TestDb, attrs, download, download_bytes, eager_runner, fetch, get, post,
    post_json, sel, send, texts,
};
use http_body_util::BodyExt;
use scraper::Html;
use serde_json::{Value, json};
use tower::ServiceExt;

const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|v| v.to_string() + "\n").collect()
}

async fn new_run(app: &axum::Router, name: &str) -> String {
    let (s, run) = send(
        app,
        post_json("/api/v1/runs", &json!({"project":"p","name":name})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{run}");
    run["id"].as_str().unwrap().to_string()
}

async fn post_records(app: &axum::Router, id: &str, lines: &[Value]) {
    let (s, body) = send(
        app,
        post(
            &format!("/api/v1/runs/{id}/records"),
            "application/x-ndjson",
            ndjson(lines),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

async fn page(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let (s, body) = send(app, get(uri)).await;
    (
        s,
        body.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string()),
    )
}

/// A 4 × 3 weight matrix whose values say their step: step/100 + column.
fn weights_at(key: &str, step: u64) -> Value {
    let values: Vec<f64> = (0..12)
        .map(|i| step as f64 / 100.0 + (i % 3) as f64 - 1.0)
        .collect();
    json!({"type":"tensor","step":step,"key":key,"shape":[4,3],"values":values})
}

fn records() -> Vec<Value> {
    let mut out = vec![
        json!({"type":"model","layers":[
            {"name":"fc1","type":"Linear","in":3,"out":4,"params":16,"activation":"relu","trainable":true},
            {"name":ONLOAD,"type":"Linear","in":4,"out":2,"params":10,"activation":"softmax"}
        ],"total_params":26,"loss":"cross_entropy","optimizer":{"name":"sgd","lr":0.1}}),
        json!({"type":"dataset","split":"train","n":1000,"n_features":2,"missing":0,
               "feature_mean":[0.0,1.0],"feature_std":[1.0,1.0],"class_counts":{"cat":900,SCRIPT:100}}),
        json!({"type":"dataset","split":"val","n":100,"n_features":2,"missing":7,
               "feature_mean":[0.1,3.0],"feature_std":[1.0,1.0],"class_counts":{"cat":50,SCRIPT:50}}),
        json!({"type":"image","step":0,"key":"features/conv1","shape":[3,2,2],"values":[0,1,2,3,5,5,5,5,"NaN",1,2,3]}),
        json!({"type":"image","step":50,"key":"features/conv1","shape":[3,2,2],"values":[3,2,1,0,4,4,4,4,0,1,2,"Infinity"]}),
        json!({"type":"image","step":50,"key":"inputs/sample","png":PNG_1X1}),
        json!({"type":"image","step":5,"key":format!("maps/{SCRIPT}"),"shape":[1,1,1],"values":[1]}),
        json!({"type":"tensor","step":5,"key":format!("weights/{ONLOAD}"),"shape":[1],"values":["NaN"]}),
    ];
    for step in [0, 100, 200] {
        out.push(weights_at("weights/fc1", step));
    }
    out
}

/// 300 validation samples of 3 classes, the model sure of the true class
/// (0.9); every fifth label flipped to the next class, and one id that is
/// markup. Also a small training split.
fn predictions_records() -> Vec<Value> {
    let (mut labels, mut probs, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..300u32 {
        let truth = i % 3;
        let mut row = vec![0.05; 3];
        row[truth as usize] = 0.9;
        labels.push(if i % 5 == 0 { (truth + 1) % 3 } else { truth });
        probs.push(row);
        ids.push(if i == 0 {
            json!(SCRIPT)
        } else {
            json!(format!("img-{i}"))
        });
    }
    vec![
        json!({"type":"predictions","step":400,"split":"val","labels":labels,"probs":probs,"ids":ids}),
        // An older record of the split: the latest is the one analysed.
        json!({"type":"predictions","step":100,"split":"val","labels":[0,1],"probs":[[0.5,0.3,0.2],[0.2,0.5,0.3]]}),
        json!({"type":"predictions","step":400,"split":"train","labels":[0,1,2,2],"probs":[[0.8,0.1,0.1],[0.1,0.8,0.1],[0.1,0.1,0.8],[0.1,0.1,0.8]]}),
    ]
}

on_both_backends! {
    async fn the_views_draw_the_chosen_step(db: &TestDb) {
        let app = db.app();
        let id = new_run(&app, SCRIPT).await;
        post_records(&app, &id, &records()).await;
        eager_runner(&db.store, "http://t").tick().await.unwrap();

        let (s, html) = page(&app, &format!("/runs/{id}")).await;
        assert_eq!(s, 200);
        assert!(!html.contains(SCRIPT) && !html.contains(ONLOAD), "every key and name is escaped");
        assert!(!html.contains("<svg onload"));
        let doc = Html::parse_document(&html);

        // Weight heatmap: the model's first layer, at its latest step.
        assert_eq!(texts(&doc, "#weights nav.keys a"), ["fc1", ONLOAD], "model order, names as text");
        assert_eq!(texts(&doc, "#weights nav.keys a.current"), ["fc1"]);
        assert_eq!(texts(&doc, "#weights figure.weights svg > title"), ["weights/fc1 at step 200"]);
        assert_eq!(doc.select(&sel("#weights figure.weights svg image")).count(), 1);
        assert_eq!(attrs(&doc, "#weights select[name=tensor_step] option", "value"), ["200", "100", "0"]);
        assert_eq!(attrs(&doc, "#weights select option[selected]", "value"), ["200"]);
        let facts = texts(&doc, "#weights dl.facts dd");
        assert!(facts.contains(&"4 × 3".to_string()) && facts.contains(&"1 to 3".to_string()), "{facts:?}");

        // Another step, and one between the logged ones.
        let (_, html) = page(&app, &format!("/runs/{id}?tensor=weights%2Ffc1&tensor_step=100")).await;
        let doc = Html::parse_document(&html);
        assert_eq!(texts(&doc, "#weights figure.weights svg > title"), ["weights/fc1 at step 100"]);
        assert!(texts(&doc, "#weights dl.facts dd").contains(&"0 to 2".to_string()));
        let (_, html) = page(&app, &format!("/runs/{id}?tensor=weights%2Ffc1&tensor_step=150")).await;
        let doc = Html::parse_document(&html);
        assert_eq!(texts(&doc, "#weights figure.weights svg > title"), ["weights/fc1 at step 100"]);
        assert!(texts(&doc, "#weights p.note")[0].contains("Step 150"));

        // The hostile key: escaped in the link, the form, the chart and its NaN counted.
        let key = format!("weights/{ONLOAD}");
        let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("tensor", &key).finish();
        let (s, html) = page(&app, &format!("/runs/{id}?{q}")).await;
        assert_eq!(s, 200);
        assert!(!html.contains(ONLOAD));
        let doc = Html::parse_document(&html);
        assert_eq!(attrs(&doc, "#weights input[name=tensor]", "value"), std::slice::from_ref(&key));
        assert_eq!(texts(&doc, "#weights figure.weights svg > title"), [format!("{key} at step 5")]);
        assert_eq!(texts(&doc, "#weights p.bad"), ["▲ 1 NaN among the values (magenta cells)"]);
        // An unknown key falls back, saying so.
        let (_, html) = page(&app, &format!("/runs/{id}?tensor=%3Cscript%3Ex")).await;
        assert!(!html.contains("<script>x"));
        let doc = Html::parse_document(&html);
        assert!(texts(&doc, "#weights p.note")[0].contains("“<script>x”"));

        // Feature maps: a cell per channel at the latest step; the slider.
        let (_, html) = page(&app, &format!("/runs/{id}")).await;
        let doc = Html::parse_document(&html);
        assert_eq!(texts(&doc, "#feature-maps nav.keys a.current"), ["conv1"]);
        assert_eq!(texts(&doc, "#feature-maps figure.fmap figcaption > span:first-child"), ["channel 0", "channel 1", "channel 2"]);
        let srcs = attrs(&doc, "#feature-maps figure.fmap img", "src");
        assert!(srcs.iter().all(|s| s.starts_with("data:image/png;base64,")));
        assert_eq!(texts(&doc, "#feature-maps figure.fmap .nonfinite"), ["1 NaN/Inf"], "channel 2 at step 50");
        let range = doc.select(&sel("#feature-maps input[type=range]")).next().unwrap();
        let r = range.value();
        assert_eq!(
            (r.attr("name"), r.attr("min"), r.attr("max"), r.attr("step"), r.attr("value")),
            (Some("image_step"), Some("0"), Some("50"), Some("50"), Some("50"))
        );
        assert_eq!(attrs(&doc, "#feature-maps form.steps input[name=image]", "value"), ["features/conv1"]);
        let (_, html) = page(&app, &format!("/runs/{id}?image=features%2Fconv1&image_step=0")).await;
        let doc = Html::parse_document(&html);
        assert_eq!(texts(&doc, "#feature-maps figure.fmap figcaption .muted"), ["0 … 3", "constant 5", "1 … 3"]);
        // The forms keep the other view's choice.
        let (_, html) = page(&app, &format!("/runs/{id}?tensor=weights%2Ffc1&tensor_step=0&image_step=0")).await;
        let doc = Html::parse_document(&html);
        let hidden: Vec<(String, String)> = doc
            .select(&sel("#feature-maps form.steps input[type=hidden]"))
            .map(|e| (e.value().attr("name").unwrap().to_string(), e.value().attr("value").unwrap().to_string()))
            .collect();
        assert!(hidden.contains(&("tensor".into(), "weights/fc1".into())) && hidden.contains(&("tensor_step".into(), "0".into())), "{hidden:?}");

        // A PNG image: an <img> of the route that serves it.
        let (_, html) = page(&app, &format!("/runs/{id}?image=inputs%2Fsample")).await;
        let doc = Html::parse_document(&html);
        let srcs = attrs(&doc, "#feature-maps figure.fmap img", "src");
        assert_eq!(srcs, [format!("/runs/{id}/image.png?key=inputs%2Fsample&step=50")]);
        let resp = app.clone().oneshot(Request::get(&srcs[0]).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "image/png");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let (s, _) = send(&app, get(&format!("/runs/{id}/image.png?key=features%2Fconv1&step=50"))).await;
        assert_eq!(s, 404, "a feature map has no PNG to serve");
        // The hostile image key.
        let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("image", &format!("maps/{SCRIPT}")).finish();
        let (_, html) = page(&app, &format!("/runs/{id}?{q}")).await;
        assert!(!html.contains(SCRIPT));
        let doc = Html::parse_document(&html);
        assert_eq!(texts(&doc, "#feature-maps nav.keys a.current"), [format!("maps/{SCRIPT}")]);
        assert_eq!(doc.select(&sel("#feature-maps figure.fmap")).count(), 1);
        assert!(attrs(&doc, "#feature-maps figure.fmap img", "alt")[0].starts_with(&format!("maps/{SCRIPT} channel 0")));

        // Dataset: splits, the class chart, the feature shift.
        assert_eq!(texts(&doc, "#dataset table.splits tbody td:first-child"), ["train", "val"]);
        assert_eq!(texts(&doc, "#dataset table.splits td.bad"), ["7 (3.50 % of cells)"]);
        let bars = doc.select(&sel("#dataset figure.bars svg")).next().expect("the class chart").html();
        assert!(bars.contains("class &lt;script&gt;alert(1)&lt;/script&gt;, val: 50 (50.0 %)"), "{bars}");
        assert_eq!(texts(&doc, "#dataset table.shift tbody td:first-child"), ["1", "0"], "most shifted first");
        assert_eq!(doc.select(&sel("#dataset table.shift tr.shifted")).count(), 1);

        // Model: the layer table, the finding on the output layer.
        assert_eq!(texts(&doc, "#model table.layers tbody td code"), ["fc1", ONLOAD]);
        let noted = texts(&doc, "#model table.layers tr.noted td.notes");
        assert_eq!(noted.len(), 1, "{noted:?}");
        assert!(noted[0].contains("loss_activation_mismatch"), "{noted:?}");
        assert!(texts(&doc, "#model dl.facts dd").contains(&"sgd, lr 0.1".to_string()));

        // A step that is not a number.
        let (s, _) = page(&app, &format!("/runs/{id}?tensor_step=last")).await;
        assert_eq!(s, 400);
    }

    async fn the_views_download_what_they_show(db: &TestDb) {
        let app = db.app();
        let id = new_run(&app, "downloads").await;
        post_records(&app, &id, &[
            json!({"type":"tensor","step":100,"key":"weights/fc1","shape":[2,3],"values":[0.5,-0.25,"NaN",1,"Infinity",2]}),
            json!({"type":"tensor","step":200,"key":"weights/fc1","shape":[2,3],"values":[1,2,3,4,5,6]}),
            json!({"type":"image","step":50,"key":"features/conv1","shape":[2,2,2],"values":[0.1,0,0.7,0.3,"NaN",0.5,0.2,"-Infinity"]}),
            json!({"type":"image","step":60,"key":"inputs/sample","png":PNG_1X1}),
        ]).await;

        // The weight heatmap: a read-out a value, its downloads beside it.
        let (_, html) = page(&app, &format!("/runs/{id}?tensor_step=100")).await;
        let doc = Html::parse_document(&html);
        assert_eq!(
            texts(&doc, "#weights figure.weights svg g.hover title"),
            ["row 0, col 0: 0.5", "row 0, col 1: -0.25", "row 0, col 2: 1 NaN", "row 1, col 0: 1", "row 1, col 1: 1 +Inf", "row 1, col 2: 2"]
        );
        let links = attrs(&doc, "#weights figure.weights figcaption.downloads a[download]", "href");
        let q = "tensor=weights%2Ffc1&tensor_step=100";
        assert_eq!(links, [format!("/runs/{id}/charts/weights.svg?{q}"), format!("/runs/{id}/charts/weights.csv?{q}")]);
        let svg = download(&app, &links[0], "weights-fc1-100.svg").await;
        assert!(html.contains(&svg), "the SVG on the page");
        assert!(svg.contains("<title>row 1, col 1: 1 +Inf</title>"));
        assert_eq!(
            download(&app, &links[1], "weights-fc1-100.csv").await,
            "key,step,row,col,value\nweights/fc1,100,0,0,0.5\nweights/fc1,100,0,1,-0.25\nweights/fc1,100,0,2,NaN\n\
             weights/fc1,100,1,0,1.0\nweights/fc1,100,1,1,Infinity\nweights/fc1,100,1,2,2.0\n"
        );
        // Without a step: the latest.
        let csv = download(&app, &format!("/runs/{id}/charts/weights.csv?tensor=weights%2Ffc1"), "weights-fc1-200.csv").await;
        assert_eq!(csv.lines().last(), Some("weights/fc1,200,1,2,6.0"));

        // A feature map: a PNG under each channel (the one drawn), its values as CSV.
        let (_, html) = page(&app, &format!("/runs/{id}?image=features%2Fconv1")).await;
        let doc = Html::parse_document(&html);
        let q = "image=features%2Fconv1&image_step=50";
        let pngs = attrs(&doc, "#feature-maps figure.fmap figcaption a[download]", "href");
        assert_eq!(pngs, (0..2).map(|c| format!("/runs/{id}/charts/feature-map.png?{q}&channel={c}")).collect::<Vec<_>>());
        let srcs = attrs(&doc, "#feature-maps figure.fmap img", "src");
        for (c, href) in pngs.iter().enumerate() {
            let png = download_bytes(&app, href, &format!("features-conv1-50-ch{c}.png")).await;
            assert_eq!(srcs[c], format!("data:image/png;base64,{}", STANDARD.encode(&png)), "channel {c}");
        }
        let links = attrs(&doc, "#feature-maps figcaption.downloads a[download]", "href");
        assert_eq!(links, [format!("/runs/{id}/charts/feature-map.csv?{q}")]);
        assert_eq!(
            download(&app, &links[0], "features-conv1-50.csv").await,
            "key,step,channel,row,col,value\nfeatures/conv1,50,0,0,0,0.1\nfeatures/conv1,50,0,0,1,0.0\n\
             features/conv1,50,0,1,0,0.7\nfeatures/conv1,50,0,1,1,0.3\nfeatures/conv1,50,1,0,0,NaN\n\
             features/conv1,50,1,0,1,0.5\nfeatures/conv1,50,1,1,0,0.2\nfeatures/conv1,50,1,1,1,-Infinity\n"
        );

        // A logged picture downloads as it was logged.
        let (_, html) = page(&app, &format!("/runs/{id}?image=inputs%2Fsample")).await;
        let doc = Html::parse_document(&html);
        let links = attrs(&doc, "#feature-maps figcaption.downloads a[download]", "href");
        assert_eq!(links, [format!("/runs/{id}/charts/feature-map.png?image=inputs%2Fsample&image_step=60")]);
        assert_eq!(attrs(&doc, "#feature-maps figure.fmap figcaption a[download]", "href"), links);
        let png = download_bytes(&app, &links[0], "inputs-sample-60.png").await;
        assert_eq!(png, STANDARD.decode(PNG_1X1).unwrap());

        // A missing or malformed parameter is a 400 naming it, one that
        // matches nothing a 404 naming it.
        let other = uuid::Uuid::new_v4();
        for (uri, want, says) in [
            ("weights.csv".to_string(), 400, "tensor (a tensor key) is required"),
            ("weights.svg?tensor=weights%2Fnope".into(), 404, "this run logged no such key"),
            ("weights.csv?tensor=weights%2Ffc1&tensor_step=150".into(), 404, "tensor_step 150: "),
            ("weights.csv?tensor=weights%2Ffc1&tensor_step=last".into(), 400, "is not a step"),
            ("weights.png?tensor=weights%2Ffc1".into(), 404, "no chart"),
            ("feature-map.csv".into(), 400, "image (an image key) is required"),
            ("feature-map.png?image=features%2Fconv1&channel=2".into(), 404, "channel 2: "),
            ("feature-map.png?image=features%2Fconv1&channel=x".into(), 400, "is not a channel"),
            ("feature-map.csv?image=inputs%2Fsample".into(), 404, "is a picture (PNG), not values"),
            ("feature-map.svg?image=features%2Fconv1".into(), 404, "no chart"),
            ("feature-map.csv?image=features%2Fconv1&image_step=0".into(), 404, "image_step 0: "),
        ] {
            let (status, _, body) = fetch(&app, &format!("/runs/{id}/charts/{uri}")).await;
            assert_eq!(status, want, "{uri}: {body}");
            assert!(body.contains(says), "{uri}: {body}");
        }
        let (status, _, _) = fetch(&app, &format!("/runs/{other}/charts/weights.csv?tensor=weights%2Ffc1")).await;
        assert_eq!(status, 404, "no such run");
    }

    async fn predictions_raise_label_errors_and_fill_the_panel(db: &TestDb) {
        let app = db.app();
        let id = new_run(&app, "noisy-labels").await;
        post_records(&app, &id, &predictions_records()).await;
        eager_runner(&db.store, "http://t").tick().await.unwrap();

        // The finding, with the suspects in its evidence.
        let (s, body) = send(&app, get(&format!("/api/v1/runs/{id}/findings?status=open"))).await;
        assert_eq!(s, 200);
        let f = body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "label_errors")
            .unwrap_or_else(|| panic!("no label_errors: {body}"));
        assert_eq!(f["severity"], "error", "{f}");
        assert_eq!(f["onset_step"], 400);
        assert_eq!(f["evidence"]["metrics"]["confident_share/val"], 0.2);
        let samples = f["evidence"]["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 20);
        for s in samples {
            let i: u32 = match s["id"].as_str().unwrap() {
                SCRIPT => 0,
                other => other.trim_start_matches("img-").parse().unwrap(),
            };
            assert_eq!(i % 5, 0, "a flipped sample: {s}");
            assert_eq!(s["predicted"], i % 3);
            assert_eq!(s["label"], (i % 3 + 1) % 3);
            assert_eq!(s["split"], "val");
        }

        // The analysis API: the validation split's latest record by default.
        let (s, a) = send(&app, get(&format!("/api/v1/runs/{id}/predictions/analysis?suspects=5"))).await;
        assert_eq!(s, 200, "{a}");
        assert_eq!(a["splits"], json!(["train", "val"]));
        assert_eq!(a["analysis"]["split"], "val");
        assert_eq!(a["analysis"]["step"], 400);
        assert_eq!(a["analysis"]["n"], 300);
        assert_eq!(a["suspects_total"], 60);
        assert_eq!(a["analysis"]["suspects"].as_array().unwrap().len(), 5);
        // Labelled 1, predicted 0: the 20 flipped class-0 samples.
        assert!(a["analysis"]["confusion"].as_array().unwrap().contains(&json!([1, 0, 20])));
        let (s, a) = send(&app, get(&format!("/api/v1/runs/{id}/predictions/analysis?split=val&step=100"))).await;
        assert_eq!((s, a["analysis"]["n"].clone()), (StatusCode::OK, json!(2)));
        let (s, e) = send(&app, get(&format!("/api/v1/runs/{id}/predictions/analysis?split=test"))).await;
        assert_eq!(s, 404, "{e}");
        let (s, e) = send(&app, get(&format!("/api/v1/runs/{id}/predictions/analysis?step=x"))).await;
        assert_eq!(s, 400, "{e}");
        assert!(e.to_string().contains("step"), "{e}");

        // The panel.
        let (s, html) = page(&app, &format!("/runs/{id}")).await;
        assert_eq!(s, 200);
        assert!(!html.contains(SCRIPT), "ids are escaped");
        let doc = Html::parse_document(&html);
        assert_eq!(texts(&doc, "#predictions nav.keys a"), ["train", "val"]);
        assert_eq!(texts(&doc, "#predictions nav.keys a.current"), ["val"]);
        assert_eq!(texts(&doc, "#predictions table.confusion thead th"), ["label ↓ pred →", "0", "1", "2", "samples"]);
        let row1 = texts(&doc, "#predictions table.confusion tbody tr:nth-child(2) td");
        assert_eq!(row1, ["20", "80", "", "100"], "labelled 1: 20 look like 0");
        assert_eq!(doc.select(&sel("#predictions table.classes tbody tr")).count(), 3);
        let suspects = texts(&doc, "#predictions table.suspects tbody tr td:first-child");
        assert_eq!(suspects.len(), 50);
        assert!(suspects.contains(&SCRIPT.to_string()));
        // The finding links to the panel and lists its samples.
        assert_eq!(attrs(&doc, "#finding-label_errors a.to-chart", "href"), ["#predictions"]);
        assert_eq!(doc.select(&sel("#finding-label_errors ol.samples li")).count(), 20);

        // The other split, picked by the query.
        let (_, html) = page(&app, &format!("/runs/{id}?pred=train")).await;
        let doc = Html::parse_document(&html);
        assert_eq!(texts(&doc, "#predictions nav.keys a.current"), ["train"]);
        assert_eq!(doc.select(&sel("#predictions table.confusion tbody tr")).count(), 3);
        assert_eq!(texts(&doc, "#predictions p.ok").len(), 1, "no suspects in train");
    }
}

#[tokio::test]
async fn empty_views_say_what_to_log() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let id = new_run(&app, "empty").await;
    let (s, html) = page(&app, &format!("/runs/{id}")).await;
    assert_eq!(s, 200);
    let doc = Html::parse_document(&html);
    for (section, what) in [
        ("weights", "run.log_tensor(\"weights/fc1\""),
        ("feature-maps", "feature_maps=[\"conv1\"]"),
        ("dataset", "run.log_dataset(\"train\""),
        ("model", "run.log_model(model"),
        ("predictions", "run.log_predictions(\"val\""),
    ] {
        let empty = texts(&doc, &format!("#{section} p.empty"));
        assert_eq!(empty.len(), 1, "{section}");
        assert!(empty[0].contains(what), "{section}: {}", empty[0]);
    }
    db.cleanup().await;
}

#[tokio::test]
async fn a_big_matrix_is_drawn_in_bounded_cells() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let id = new_run(&app, "big").await;
    let values: Vec<f64> = (0..600 * 500)
        .map(|i| ((i % 97) as f64 - 48.0) / 48.0)
        .collect();
    post_records(
        &app,
        &id,
        &[json!({"type":"tensor","step":1,"key":"weights/fc1","shape":[600,500],"values":values})],
    )
    .await;
    let (_, html) = page(&app, &format!("/runs/{id}")).await;
    assert!(html.len() < 300_000, "the page weighs {} bytes", html.len());
    let doc = Html::parse_document(&html);
    let desc = texts(&doc, "#weights figure.weights svg > desc");
    assert!(
        desc[0].contains("each cell the mean of 3 × 2 values"),
        "{desc:?}"
    );
    assert!(
        texts(&doc, "#weights dl.facts dd")
            .contains(&"200 × 250, each the mean of 3 × 2 values".to_string())
    );
    db.cleanup().await;
}
