//! Record format v2 (docs/record-format.md) through the HTTP API: run keys,
//! image, tensor and predictions records, their limits, and a lossless
//! import → export → import.

mod common;

use axum::http::StatusCode;
use common::{TestDb, get, post, post_json, send};
use serde_json::{Value, json};

const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";

fn v2_lines() -> String {
    [
        json!({"type":"image","step":10,"key":"inputs/sample","png":PNG_1X1}),
        json!({"type":"image","step":10,"key":"features/conv1","shape":[2,2,2],"values":[0,1,2,3,"NaN",5,6,"Infinity"]}),
        json!({"type":"tensor","step":20,"key":"weights/fc1","shape":[2,3],"values":[0.5,-0.25,1,0,2,3],"sample":"rows:0-1"}),
        json!({"type":"predictions","step":30,"split":"val","labels":[0,2],"probs":[[0.7,0.2,0.1],[0.1,0.1,0.8]],"ids":["a",7]}),
        json!({"type":"predictions","step":30,"split":"test","labels":[150],"probs":[[0.9,0.05]],"classes":[[150,3]],"num_classes":200}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect()
}

async fn new_run(app: &axum::Router, body: Value) -> (StatusCode, Value) {
    send(app, post_json("/api/v1/runs", &body)).await
}

on_both_backends! {
    async fn a_run_key_names_one_run_per_project(db: &TestDb) {
        let app = db.app();
        let (s1, a) = new_run(&app, json!({"project":"p","run_key":"job-17"})).await;
        let (s2, b) = new_run(&app, json!({"project":"p","run_key":"job-17","name":"again"})).await;
        let (s3, c) = new_run(&app, json!({"project":"other","run_key":"job-17"})).await;
        assert_eq!((s1, s2, s3), (StatusCode::CREATED, StatusCode::OK, StatusCode::CREATED));
        assert_eq!(a["id"], b["id"], "the same key in the same project is the same run");
        assert_ne!(a["id"], c["id"]);
        assert_eq!(b["run_key"], "job-17");

        // A recording with a known key writes into that run.
        let rec = format!(
            "{}\n{}\n",
            json!({"type":"run","name":"re-import","project":"p","run_key":"job-17"}),
            json!({"type":"scalar","step":3,"key":"train/loss","value":1.5}),
        );
        let (s, imported) = send(&app, post("/api/v1/import", "application/x-ndjson", rec)).await;
        assert_eq!(s, StatusCode::OK, "{imported}");
        assert_eq!(imported["id"], a["id"]);
        let (_, series) = send(&app, get(&format!("/api/v1/runs/{}/series", a["id"].as_str().unwrap()))).await;
        assert_eq!(series["series"][0]["key"], "train/loss");
    }

    async fn image_tensor_and_predictions_round_trip(db: &TestDb) {
        let app = db.app();
        let (_, run) = new_run(&app, json!({"project":"p"})).await;
        let id = run["id"].as_str().unwrap();
        let (s, body) = send(&app, post(&format!("/api/v1/runs/{id}/records"), "application/x-ndjson", v2_lines())).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], 5);

        let (_, keys) = send(&app, get(&format!("/api/v1/runs/{id}/images"))).await;
        let names: Vec<&str> = keys["keys"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
        assert_eq!(names, ["features/conv1", "inputs/sample"]);
        let (_, fmap) = send(&app, get(&format!("/api/v1/runs/{id}/images?key=features/conv1"))).await;
        assert_eq!(fmap["records"][0]["values"][4], "NaN", "non-finite values come back as sent");
        let (_, t) = send(&app, get(&format!("/api/v1/runs/{id}/tensors?key=weights/fc1"))).await;
        assert_eq!(t["records"][0]["shape"], json!([2, 3]));
        let (_, splits) = send(&app, get(&format!("/api/v1/runs/{id}/predictions"))).await;
        assert_eq!(splits["splits"].as_array().unwrap().len(), 2);
        let (_, p) = send(&app, get(&format!("/api/v1/runs/{id}/predictions?split=test"))).await;
        assert_eq!(p["records"][0]["classes"], json!([[150, 3]]));
        let (s, _) = send(&app, get(&format!("/api/v1/runs/{id}/tensors?key=nope"))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // import → export → import is lossless.
        let (_, first) = send(&app, get(&format!("/api/v1/runs/{id}/export"))).await;
        let first = first.as_str().unwrap().to_string();
        assert_eq!(first.lines().filter(|l| l.contains("\"type\":\"predictions\"")).count(), 2);
        let (s, again) = send(&app, post("/api/v1/import", "application/x-ndjson", first.clone())).await;
        assert_eq!(s, StatusCode::CREATED);
        let (_, second) = send(&app, get(&format!("/api/v1/runs/{}/export", again["id"].as_str().unwrap()))).await;
        assert_eq!(second.as_str().unwrap(), first);
    }

    async fn limits_and_bad_shapes_store_nothing(db: &TestDb) {
        let app = db.app();
        let (_, run) = new_run(&app, json!({"project":"p"})).await;
        let id = run["id"].as_str().unwrap();
        let big = vec![0.5; 20_001];
        let many_labels = vec![0; 20_001];
        let cases = [
            (json!({"type":"tensor","step":1,"key":"w","shape":[1025,1024],"values":[]}), 413, "max_tensor_values"),
            (json!({"type":"predictions","step":1,"split":"val","labels":many_labels,"probs":big.iter().map(|_| json!([1.0])).collect::<Vec<_>>()}), 413, "max_prediction_samples"),
            (json!({"type":"predictions","step":1,"split":"val","labels":[0],"probs":[vec![0.001; 101]]}), 413, "MAX_FULL_CLASSES"),
            (json!({"type":"histogram","step":1,"key":"h","edges":(0..1002).collect::<Vec<_>>(),"counts":vec![1; 1001]}), 413, "max_histogram_bins"),
            (json!({"type":"tensor","step":1,"key":"w","shape":[2,3],"values":[1,2,3]}), 422, "needs 6 values"),
            (json!({"type":"image","step":1,"key":"i","png":"aGVsbG8="}), 422, "PNG"),
            (json!({"type":"predictions","step":1,"split":"val","labels":[3],"probs":[[0.5,0.5]]}), 422, "below 2"),
            (json!({"type":"dataset","split":"tr\u{0}ain"}), 422, "NUL"),
        ];
        for (line, status, says) in cases {
            let body = format!("{}\n{line}\n", json!({"type":"scalar","step":0,"key":"k","value":1}));
            let (s, err) = send(&app, post(&format!("/api/v1/runs/{id}/records"), "application/x-ndjson", body)).await;
            assert_eq!(s.as_u16(), status, "{line}: {err}");
            assert!(err["error"]["message"].as_str().unwrap().contains(says), "{err}");
            assert_eq!(err["error"]["line"], 2, "{err}");
        }
        let (_, series) = send(&app, get(&format!("/api/v1/runs/{id}/series"))).await;
        assert_eq!(series["series"], json!([]), "nothing from a refused body is stored");
        let (_, t) = send(&app, get(&format!("/api/v1/runs/{id}/tensors"))).await;
        assert_eq!(t["keys"], json!([]));
        let (s, err) = new_run(&app, json!({"project":"p\u{0}x"})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        let (s, _) = new_run(&app, json!({"tags": vec!["t"; 101]})).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
