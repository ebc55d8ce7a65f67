//! The HTTP API through the router (no socket), on SQLite.

mod common;

use std::io::Write;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestDb, get, post, post_json, send};
use serde_json::{Value, json};
use trainlens::app;
use trainlens::http::AppState;

async fn create_run(app: &axum::Router, project: &str) -> String {
    let (status, body) = send(
        app,
        post_json(
            "/api/v1/runs",
            &json!({"project": project, "name": "r1", "config": {"lr": 0.1}, "tags": ["a"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// A fresh SQLite store, the router over it and a new run of `project`.
async fn app_with_run(project: &str) -> (TestDb, axum::Router, String) {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let id = create_run(&app, project).await;
    (db, app, id)
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The error object of a response, asserting the status.
fn error(resp: (StatusCode, Value), want: StatusCode) -> Value {
    assert_eq!(resp.0, want, "{}", resp.1);
    let e = resp.1["error"].clone();
    assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
    e
}

async fn series_count(app: &axum::Router, id: &str) -> usize {
    let (status, body) = send(app, get(&format!("/api/v1/runs/{id}/series"))).await;
    assert_eq!(status, StatusCode::OK);
    body["series"].as_array().unwrap().len()
}

#[tokio::test]
async fn create_get_and_list_runs() {
    let (db, app, id) = app_with_run("vision").await;
    let (status, run) = send(&app, get(&format!("/api/v1/runs/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["url"], format!("http://trainlens.test/runs/{id}"));
    assert_eq!(
        (run["project"].as_str(), run["status"].as_str()),
        (Some("vision"), Some("running"))
    );
    assert_eq!(run["config"], json!({"lr": 0.1}));
    let (_, ordered) = send(
        &app,
        post_json(
            "/api/v1/runs",
            &json!({"config": {"z": 1, "a": {"y": 2, "b": 3}}}),
        ),
    )
    .await;
    let text = ordered["config"].to_string();
    assert_eq!(
        text, r#"{"z":1,"a":{"y":2,"b":3}}"#,
        "config keeps the order it was sent in"
    );
    for _ in 0..2 {
        create_run(&app, "nlp").await;
    }
    let (_, page) = send(&app, get("/api/v1/runs?project=nlp&limit=1")).await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_offset"], 1);
    let (_, page) = send(&app, get("/api/v1/runs?project=nlp&limit=1&offset=1")).await;
    assert_eq!(page["next_offset"], Value::Null);
    let (_, all) = send(&app, get("/api/v1/runs?status=running")).await;
    assert_eq!(all["runs"].as_array().unwrap().len(), 4);
    let (_, projects) = send(&app, get("/api/v1/projects")).await;
    let nlp = projects["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "nlp")
        .unwrap();
    assert_eq!(nlp["runs"], 2);

    let (status, _) = send(&app, post_json("/api/v1/runs", &json!({}))).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "name and project have defaults"
    );
    let e = error(
        send(&app, get("/api/v1/runs?status=sleeping")).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(e["field"], "status");
    let e = error(
        send(&app, get("/api/v1/runs?limit=many")).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(e["field"], "limit");
    let e = error(
        send(&app, post_json("/api/v1/runs", &json!({"name": 5}))).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(e["field"], "name");
    let e = error(
        send(&app, post_json("/api/v1/runs", &json!({"project": ""}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(e["field"], "project");
    db.cleanup().await;
}

#[tokio::test]
async fn ndjson_ingest_and_read_back() {
    let (db, app, id) = app_with_run("p").await;
    let mut lines = vec![
        json!({"type":"model","layers":[{"name":"fc1","type":"Linear","in":4,"out":3,"params":15,"activation":"relu","trainable":true}],"total_params":15,"loss":"cross_entropy","optimizer":{"name":"sgd","lr":0.5}}),
        json!({"type":"dataset","split":"train","n":100,"n_features":4,"missing":0,"class_counts":{"0":50,"1":50}}),
        json!({"type":"histogram","step":10,"key":"weights/fc1","edges":[-1.0,0.0,1.0],"counts":[3,4],"nonfinite":0}),
    ];
    for step in 0..2000u64 {
        let value = if step == 1500 {
            json!("NaN")
        } else if step == 1501 {
            json!("Infinity")
        } else {
            json!(1.0 / (step + 1) as f64)
        };
        lines.push(json!({"type":"scalar","step":step,"key":"train/loss","value":value,"time":1700000000.0 + step as f64}));
    }
    lines.push(json!({"type":"end","status":"failed","step":1999}));
    let (status, body) = send(
        &app,
        post(
            &format!("/api/v1/runs/{id}/records"),
            "application/x-ndjson",
            ndjson(&lines),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], lines.len());

    let (_, series) = send(&app, get(&format!("/api/v1/runs/{id}/series"))).await;
    assert_eq!(series["series"][0]["key"], "train/loss");
    assert_eq!(series["series"][0]["count"], 2000);
    assert_eq!(series["series"][0]["last_step"], 1999);

    let (status, full) = send(
        &app,
        get(&format!("/api/v1/runs/{id}/scalars?key=train%2Floss")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(full["steps"].as_array().unwrap().len(), 2000);
    assert_eq!(full["values"][1500], "NaN");
    assert_eq!(full["values"][1501], "Infinity");
    assert_eq!(full["times"][7], 1700000007.0);
    assert_eq!(full["downsampled"], false);

    let (_, small) = send(
        &app,
        get(&format!(
            "/api/v1/runs/{id}/scalars?key=train/loss&max_points=100"
        )),
    )
    .await;
    let steps = common::steps_of(&small);
    assert!(steps.len() <= 100 && steps.len() >= 40, "{}", steps.len());
    assert_eq!(small["downsampled"], true);
    assert_eq!(small["total"], 2000);
    let at = |s: u64| small["values"][steps.iter().position(|&x| x == s).unwrap()].clone();
    assert_eq!(at(1500), "NaN");
    assert_eq!(at(1501), "Infinity");
    assert_eq!(at(0), 1.0, "the spike at the start is kept");

    let (_, window) = send(
        &app,
        get(&format!(
            "/api/v1/runs/{id}/scalars?key=train/loss&from_step=10&to_step=19"
        )),
    )
    .await;
    assert_eq!(window["steps"].as_array().unwrap().len(), 10);

    let (_, hs) = send(&app, get(&format!("/api/v1/runs/{id}/histograms"))).await;
    assert_eq!(
        hs["histograms"][0],
        json!({"key":"weights/fc1","count":1,"first_step":10,"last_step":10})
    );
    let (_, h) = send(
        &app,
        get(&format!("/api/v1/runs/{id}/histograms?key=weights/fc1")),
    )
    .await;
    assert_eq!(h["histograms"][0]["counts"], json!([3, 4]));
    let (_, model) = send(&app, get(&format!("/api/v1/runs/{id}/model"))).await;
    assert_eq!(model["layers"][0]["type"], "Linear");
    let (_, ds) = send(&app, get(&format!("/api/v1/runs/{id}/datasets"))).await;
    assert_eq!(ds["datasets"][0]["class_counts"], json!({"0":50,"1":50}));
    let (_, run) = send(&app, get(&format!("/api/v1/runs/{id}"))).await;
    assert_eq!(
        (run["status"].as_str(), run["end_step"].as_u64()),
        (Some("failed"), Some(1999))
    );

    for kind in ["scalars", "histograms"] {
        let uri = format!("/api/v1/runs/{id}/{kind}?key=nope");
        assert_eq!(
            send(&app, get(&uri)).await.0,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    db.cleanup().await;
}

/// A full read (no `max_points`) streams its answer; it is byte for byte
/// the answer of a read that asks for more points than there are.
#[tokio::test]
async fn full_reads_stream_the_same_bytes_as_an_unsampled_read() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let (_db, app, id) = app_with_run("stream").await;
    // Over the streaming threshold, across many chunks, with gaps,
    // non-finite values and some times.
    let n = trainlens::api::v1::STREAM_READS_ABOVE_POINTS as u64 * 5 / 4 + 5000;
    let steps: Vec<u64> = (0..n).filter(|s| s % 7 != 3).collect();
    assert!(steps.len() > trainlens::api::v1::STREAM_READS_ABOVE_POINTS);
    let values: Vec<Value> = steps
        .iter()
        .map(|&s| match s % 1000 {
            10 => json!("NaN"),
            20 => json!("Infinity"),
            30 => json!("-Infinity"),
            _ => json!((s as f64).sin() * 1e-3),
        })
        .collect();
    let times: Vec<Value> = steps
        .iter()
        .map(|&s| {
            if s % 5 == 0 {
                Value::Null
            } else {
                json!(1.7e9 + s as f64 * 0.5)
            }
        })
        .collect();
    let batch = json!({"key": "train/loss", "steps": steps, "values": values, "times": times});
    let (status, body) = send(
        &app,
        post_json(&format!("/api/v1/runs/{id}/scalars"), &batch),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let raw = |uri: String| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(get(&uri)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.into_body().collect().await.unwrap().to_bytes()
        }
    };
    // A streamed answer has no length up front; a built one has.
    let length_known = |uri: String| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(get(&uri)).await.unwrap();
            resp.headers().contains_key("content-length") || {
                use axum::body::HttpBody as _;
                resp.body().size_hint().exact().is_some()
            }
        }
    };
    let whole_uri = format!("/api/v1/runs/{id}/scalars?key=train%2Floss");
    assert!(
        !length_known(whole_uri.clone()).await,
        "a big full read streams"
    );
    assert!(length_known(format!("{whole_uri}&to_step=100")).await);
    for range in [
        "",
        "&from_step=4000",
        "&to_step=8191",
        "&from_step=5000&to_step=5010",
        "&from_step=4095&to_step=4096",
        "&from_step=4095&to_step=320000",
        "&from_step=20000",
    ] {
        let base = format!("/api/v1/runs/{id}/scalars?key=train%2Floss{range}");
        let streamed = raw(base.clone()).await;
        let in_memory = raw(format!("{base}&max_points=1000000")).await;
        assert_eq!(
            String::from_utf8_lossy(&streamed),
            String::from_utf8_lossy(&in_memory),
            "range {range:?}"
        );
        let parsed: Value = serde_json::from_slice(&streamed).unwrap();
        assert_eq!(
            parsed["total"].as_u64().unwrap() as usize,
            parsed["steps"].as_array().unwrap().len()
        );
    }
    let whole: Value =
        serde_json::from_slice(&raw(format!("/api/v1/runs/{id}/scalars?key=train%2Floss")).await)
            .unwrap();
    assert_eq!(whole["steps"].as_array().unwrap().len(), steps.len());
    let at_step_1010 = steps.iter().position(|&s| s == 1010).unwrap();
    assert_eq!(whole["values"][at_step_1010], "NaN");
    assert_eq!(whole["times"][0], Value::Null);
    let (status, _) = send(&app, get(&format!("/api/v1/runs/{id}/scalars?key=nope"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn columnar_batches_and_idempotency() {
    let (db, app, id) = app_with_run("p").await;
    let batch = json!({"series":[
        {"key":"train/loss","steps":[0,1,2],"values":[2.0,"NaN",1.0],"times":[1.0,2.0,null]},
        {"key":"lr","steps":[0,1,2],"values":[0.1,0.1,0.05]}
    ]});
    let req = |body: &Value| {
        Request::post(format!("/api/v1/runs/{id}/scalars"))
            .header("content-type", "application/json")
            .header("idempotency-key", "client-7-batch-1")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, first) = send(&app, req(&batch)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first, json!({"accepted": 6, "replayed": false}));
    // The retry carries other values: it must change nothing.
    let retry = json!({"series":[{"key":"train/loss","steps":[0,1,2,3],"values":[9,9,9,9]}]});
    let (_, again) = send(&app, req(&retry)).await;
    assert_eq!(again, json!({"accepted": 6, "replayed": true}));
    let (_, pts) = send(
        &app,
        get(&format!("/api/v1/runs/{id}/scalars?key=train/loss")),
    )
    .await;
    assert_eq!(pts["values"], json!([2.0, "NaN", 1.0]));
    assert_eq!(pts["times"], json!([1.0, 2.0, null]));

    // Same (run, key, step) without a key replaces.
    let (status, _) = send(
        &app,
        post_json(
            &format!("/api/v1/runs/{id}/scalars"),
            &json!({"key":"train/loss","steps":[1],"values":[1.5]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, pts) = send(
        &app,
        get(&format!("/api/v1/runs/{id}/scalars?key=train/loss")),
    )
    .await;
    assert_eq!(pts["values"], json!([2.0, 1.5, 1.0]));

    let bad_key = Request::post(format!("/api/v1/runs/{id}/scalars"))
        .header("idempotency-key", "")
        .body(Body::from(batch.to_string()))
        .unwrap();
    assert_eq!(
        error(send(&app, bad_key).await, StatusCode::BAD_REQUEST)["field"],
        "Idempotency-Key"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn finish_and_heartbeat() {
    let (db, app, id) = app_with_run("p").await;
    let (status, beat) = send(
        &app,
        post(
            &format!("/api/v1/runs/{id}/heartbeat"),
            "application/json",
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(beat["heartbeat_at"].as_f64().unwrap() > 1.7e9);
    let (status, run) = send(
        &app,
        post_json(
            &format!("/api/v1/runs/{id}/finish"),
            &json!({"status":"finished","step":42}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (run["status"].as_str(), run["end_step"].as_u64()),
        (Some("finished"), Some(42))
    );
    let e = error(
        send(
            &app,
            post_json(
                &format!("/api/v1/runs/{id}/finish"),
                &json!({"status":"done"}),
            ),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(e["field"], "status");
    let e = error(
        send(
            &app,
            post_json(
                &format!("/api/v1/runs/{id}/finish"),
                &json!({"status":"failed","step":-1}),
            ),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(e["field"], "step");
    db.cleanup().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn import_gzip_and_export_round_trip() {
    let db = TestDb::sqlite().await;
    let app = db.app();
    let path = common::fixtures_dir().join("dev-diverge-sgd-lr5.jsonl");
    let text = std::fs::read(&path).unwrap();
    let req = Request::post("/api/v1/import")
        .header("content-encoding", "gzip")
        .body(Body::from(gzip(&text)))
        .unwrap();
    let (status, run) = send(&app, req).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let id = run["id"].as_str().unwrap();
    assert_eq!(run["status"], "finished");
    let (_, exported) = send(&app, get(&format!("/api/v1/runs/{id}/export"))).await;
    let exported = exported.as_str().unwrap().to_string();
    let count = |t: &str, kind: &str| {
        t.lines()
            .filter(|l| l.contains(&format!("\"type\":\"{kind}\"")))
            .count()
    };
    let original = String::from_utf8(text).unwrap();
    for kind in ["run", "model", "dataset", "scalar", "histogram", "end"] {
        assert_eq!(count(&exported, kind), count(&original, kind), "{kind}");
    }
    assert!(
        exported.contains("\"value\":\"NaN\""),
        "the NaN of the diverged run is exported as NaN"
    );

    let e = error(
        send(
            &app,
            post(
                "/api/v1/import",
                "application/x-ndjson",
                "{\"type\":\"scalar\",\"step\":0,\"key\":\"a\",\"value\":1}\n",
            ),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(
        (e["code"].as_str(), e["line"].as_u64()),
        (Some("missing_run"), Some(1))
    );
    let garbage = Request::post("/api/v1/import")
        .header("content-encoding", "gzip")
        .body(Body::from("not gzip"))
        .unwrap();
    error(send(&app, garbage).await, StatusCode::BAD_REQUEST);
    db.cleanup().await;
}

/// Every kind of bad input gets its status and names the field, and stores
/// nothing from the rejected request.
#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() {
    let (db, app, id) = app_with_run("p").await;
    let good = json!({"type":"scalar","step":0,"key":"train/loss","value":1.0});
    let records = format!("/api/v1/runs/{id}/records");
    let cases: Vec<(&str, String, StatusCode, Option<&str>)> = vec![
        (
            "malformed json",
            format!("{good}\n{{\"type\":\"scalar\",\"step\":1,"),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "wrong type",
            format!(
                "{good}\n{}",
                json!({"type":"scalar","step":"one","key":"k","value":1})
            ),
            StatusCode::BAD_REQUEST,
            Some("step"),
        ),
        (
            "bad value",
            format!(
                "{good}\n{}",
                json!({"type":"scalar","step":1,"key":"k","value":"NAN"})
            ),
            StatusCode::BAD_REQUEST,
            Some("value"),
        ),
        (
            "negative step",
            format!(
                "{good}\n{}",
                json!({"type":"scalar","step":-1,"key":"k","value":1})
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("step"),
        ),
        (
            "empty key",
            format!(
                "{good}\n{}",
                json!({"type":"scalar","step":1,"key":"","value":1})
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("key"),
        ),
        (
            "long key",
            format!(
                "{good}\n{}",
                json!({"type":"scalar","step":1,"key":"k".repeat(257),"value":1})
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("key"),
        ),
        (
            "histogram shape",
            format!(
                "{good}\n{}",
                json!({"type":"histogram","step":1,"key":"w","edges":[0,1,2],"counts":[1,2,3]})
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("counts"),
        ),
        (
            "run line",
            format!("{good}\n{}", json!({"type":"run","name":"x"})),
            StatusCode::BAD_REQUEST,
            Some("type"),
        ),
        (
            "unknown type",
            format!("{good}\n{}", json!({"type":"metric"})),
            StatusCode::BAD_REQUEST,
            Some("type"),
        ),
    ];
    for (what, body, want, field) in cases {
        let e = error(
            send(&app, post(&records, "application/x-ndjson", body)).await,
            want,
        );
        assert_eq!(e["line"], 2, "{what}: {e}");
        assert!(
            e["message"].as_str().unwrap().starts_with("line 2:"),
            "{what}: {e}"
        );
        if let Some(field) = field {
            assert_eq!(e["field"], field, "{what}: {e}");
        }
        assert_eq!(
            series_count(&app, &id).await,
            0,
            "{what}: the good first line must not be stored"
        );
    }

    let scalars = format!("/api/v1/runs/{id}/scalars");
    let columnar: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"series":[{"key":"a","steps":[0],"values":[1]},{"key":"b","steps":[-5],"values":[1]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "series[1].steps[0]",
        ),
        (
            json!({"series":[{"key":"a","steps":[0],"values":[1]},{"key":"b","steps":[0,1],"values":[1]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "series[1].values",
        ),
        (
            json!({"series":[{"key":"a","steps":["x"],"values":[1]}]}),
            StatusCode::BAD_REQUEST,
            "series[0].steps[0]",
        ),
    ];
    for (body, want, field) in columnar {
        let e = error(send(&app, post_json(&scalars, &body)).await, want);
        assert_eq!(e["field"], field, "{e}");
        assert_eq!(series_count(&app, &id).await, 0);
    }
    error(
        send(&app, post(&scalars, "application/json", "{\"series\": [")).await,
        StatusCode::BAD_REQUEST,
    );

    let missing = uuid::Uuid::new_v4();
    for uri in [
        format!("/api/v1/runs/{missing}"),
        format!("/api/v1/runs/{missing}/series"),
        format!("/api/v1/runs/{missing}/model"),
    ] {
        error(send(&app, get(&uri)).await, StatusCode::NOT_FOUND);
    }
    error(
        send(
            &app,
            post(
                &format!("/api/v1/runs/{missing}/records"),
                "application/x-ndjson",
                good.to_string(),
            ),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    error(
        send(
            &app,
            post_json(
                &format!("/api/v1/runs/{missing}/scalars"),
                &json!({"key":"a","steps":[0],"values":[1]}),
            ),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    let e = error(
        send(&app, get("/api/v1/runs/not-a-uuid")).await,
        StatusCode::BAD_REQUEST,
    );
    assert_eq!(e["field"], "id");
    error(
        send(&app, get("/api/v2/nothing")).await,
        StatusCode::NOT_FOUND,
    );
    db.cleanup().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_even_when_gzipped() {
    let db = TestDb::sqlite().await;
    let app = app::router(AppState::new(db.store.clone(), "http://t", 64 * 1024));
    let id = create_run(&app, "p").await;
    let steps: Vec<u64> = (0..20_000).collect();
    let big = json!({"key":"a","steps":steps,"values":vec![0.5; 20_000]}).to_string();
    assert!(big.len() > 64 * 1024);
    let e = error(
        send(
            &app,
            post(
                &format!("/api/v1/runs/{id}/scalars"),
                "application/json",
                big.clone(),
            ),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    assert_eq!(e["code"], "payload_too_large");
    // Small on the wire, large once inflated.
    let zipped = gzip(big.as_bytes());
    assert!(zipped.len() < 64 * 1024);
    let req = Request::post(format!("/api/v1/runs/{id}/scalars"))
        .header("content-encoding", "gzip")
        .body(Body::from(zipped))
        .unwrap();
    error(send(&app, req).await, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(series_count(&app, &id).await, 0);
    // A small gzipped batch is fine.
    let small = gzip(
        json!({"key":"a","steps":[1],"values":[2]})
            .to_string()
            .as_bytes(),
    );
    let req = Request::post(format!("/api/v1/runs/{id}/scalars"))
        .header("content-encoding", "gzip")
        .body(Body::from(small))
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::OK);
    db.cleanup().await;
}

/// A run's scalars as CSV (long form) and a project's runs table: every
/// point, NaN as NaN, the union of configs and last values.
#[tokio::test]
async fn csv_exports_of_a_run_and_of_a_project() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let db = TestDb::sqlite().await;
    let app = db.app();
    let fetch = |uri: String| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(get(&uri)).await.unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, headers, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let a = create_run(&app, "csv").await;
    let mut lines = Vec::new();
    for step in 0..1500u64 {
        let value = if step == 700 {
            json!("NaN")
        } else {
            json!(1.0 / (step as f64 + 1.0))
        };
        lines.push(json!({"type":"scalar","step":step,"key":"train/loss","value":value,"time":1700000000.5}));
    }
    lines.push(json!({"type":"scalar","step":1499,"key":"val/acc","value":0.75}));
    let (status, _) = send(
        &app,
        post(
            &format!("/api/v1/runs/{a}/records"),
            "application/x-ndjson",
            ndjson(&lines),
        ),
    )
    .await;
    assert!(status.is_success());
    let (status, _) = send(&app, post_json("/api/v1/runs", &json!({"project":"csv","name":"b,\"quoted\"","config":{"lr":0.1,"opt":{"name":"adam"}},"tags":["x","y"]}))).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, headers, text) = fetch(format!("/api/v1/runs/{a}/export?format=csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("run-{a}.csv"))
    );
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["key", "step", "time", "value"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1501);
    let loss: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[0] == "train/loss").collect();
    assert_eq!(loss.len(), 1500);
    assert_eq!(&loss[700][3], "NaN");
    assert_eq!(loss[2][3].parse::<f64>().unwrap(), 1.0 / 3.0, "exact");
    assert_eq!(&loss[0][2], "1700000000.5");

    let (status, _, text) = fetch("/api/v1/projects/csv/runs.csv".into()).await;
    assert_eq!(status, StatusCode::OK);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "id",
        "name",
        "status",
        "config.lr",
        "config.opt.name",
        "train/loss",
        "val/acc",
    ] {
        assert!(header.contains(&col.to_string()), "{col} in {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let b = rows
        .iter()
        .find(|r| &r[col("name")] == "b,\"quoted\"")
        .expect("the quoted name reads back");
    assert_eq!(
        (
            &b[col("config.lr")],
            &b[col("config.opt.name")],
            &b[col("tags")]
        ),
        ("0.1", "adam", "x;y")
    );
    assert_eq!(&b[col("val/acc")], "", "no value, empty cell");
    let a_row = rows.iter().find(|r| r[col("id")] == a).unwrap();
    assert_eq!(&a_row[col("val/acc")], "0.75");

    let (status, _, text) = fetch("/api/v1/projects/nope/runs.csv".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    let (status, _, text) = fetch(format!("/api/v1/runs/{a}/export?format=xlsx")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("\"field\":\"format\""), "{text}");
    db.cleanup().await;
}

/// `/metrics` parses as Prometheus text and counts what happened: requests
/// by route pattern and status, points written, the diagnosis queue.
#[tokio::test]
async fn metrics_are_prometheus_text_and_count_requests_and_points() {
    let (db, app, id) = app_with_run("m").await;
    let batch = json!({"series":[{"key":"train/loss","steps":[0,1,2],"values":[1.0,0.5,"NaN"]}]});
    for _ in 0..2 {
        let (status, _) = send(
            &app,
            post_json(&format!("/api/v1/runs/{id}/scalars"), &batch),
        )
        .await;
        assert!(status.is_success());
    }
    let (status, _) = send(&app, get("/api/v1/runs/not-a-uuid")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(&app, get("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = send(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().expect("text").to_string();
    let scrape =
        openmetrics_parser::openmetrics::parse_openmetrics(&text).expect("OpenMetrics text");
    // A family's sample whose labels include `labels`, as a number.
    let value = |family: &str, labels: &[(&str, &str)]| -> Option<f64> {
        use openmetrics_parser::OpenMetricsValue as V;
        let f = scrape.families.get(family)?;
        f.iter_samples()
            .find(|s| {
                let set = s.get_labelset().unwrap();
                labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
            })
            .map(|s| match &s.value {
                V::Counter(c) => c.value.as_f64(),
                V::Gauge(g) | V::Unknown(g) => g.as_f64(),
                _ => f64::NAN,
            })
    };
    let req = "trainlens_http_requests";
    assert_eq!(
        value(
            req,
            &[
                ("route", "/api/v1/runs/{id}/scalars"),
                ("status", "200"),
                ("method", "POST")
            ]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(req, &[("route", "/api/v1/runs"), ("status", "201")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(req, &[("route", "/api/v1/runs/{id}"), ("status", "400")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(req, &[("route", "unmatched"), ("status", "404")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value("trainlens_points_written", &[]), Some(6.0), "{text}");
    assert_eq!(
        value("trainlens_diagnosis_queue_runs", &[]),
        Some(1.0),
        "not diagnosed here: {text}"
    );
    assert!(value("trainlens_diagnosis_lag_seconds", &[]).is_some_and(|v| v >= 0.0));
    assert_eq!(
        value("trainlens_webhook_deliveries", &[("state", "failed")]),
        Some(0.0)
    );
    assert!(
        value("trainlens_db_pool_connections", &[]).is_some_and(|v| v >= 1.0),
        "{text}"
    );
    let latency = &scrape.families["trainlens_http_request_duration_seconds"];
    assert!(
        latency
            .iter_samples()
            .any(|s| matches!(s.value, openmetrics_parser::OpenMetricsValue::Histogram(_))),
        "latency histograms: {text}"
    );
    db.cleanup().await;
}
