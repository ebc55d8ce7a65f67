//! Faults: a 2xx is always on disk, a failure rolls back completely and
//! does not poison later requests.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{get, post, post_json, send};
use serde_json::json;
use trainlens::app::{self, AppState, DEFAULT_MAX_BODY_BYTES};
use trainlens::store::{Store, StoreOptions};

fn batch(lo: u64, n: u64) -> String {
    let steps: Vec<u64> = (lo..lo + n).collect();
    // Values that do not compress to nothing, so the pages fill up.
    let values: Vec<f64> = steps
        .iter()
        .map(|s| ((*s as f64) * 0.618_033_988_75).sin() * 1e3 + *s as f64 / 7.0)
        .collect();
    json!({"series":[{"key":"train/loss","steps":steps,"values":values}]}).to_string()
}

/// SQLite full (its own size limit, a real SQLITE_FULL): the failure is a
/// 507 saying so, every acknowledged batch is stored and no refused one,
/// reads keep working, and writes resume on the same store once pages are
/// free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_answers_507_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("full.db").display());
    let opts = StoreOptions {
        sqlite_max_page_count: Some(400),
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::connect_with(&url, &opts).await.unwrap());
    let app = app::router(AppState::new(
        store.clone(),
        "http://t",
        DEFAULT_MAX_BODY_BYTES,
    ));
    let (s, run) = send(&app, post_json("/api/v1/runs", &json!({"project":"p"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let id = run["id"].as_str().unwrap().to_string();
    let filler = send(
        &app,
        post_json("/api/v1/runs", &json!({"project":"filler"})),
    )
    .await
    .1;
    let filler = filler["id"].as_str().unwrap().to_string();

    const N: u64 = 5_000;
    let (mut acked, mut refused) = (Vec::new(), 0);
    for i in 0..200u64 {
        // Every second batch goes to a filler run that is deleted later.
        let target = if i % 2 == 0 { &id } else { &filler };
        let req = post(
            &format!("/api/v1/runs/{target}/scalars"),
            "application/json",
            batch(i * N, N),
        );
        let (s, body) = send(&app, req).await;
        match s {
            StatusCode::OK if target == &id => acked.push(i),
            StatusCode::OK => {}
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(body["error"]["code"], "database_full", "{body}");
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("batch {i}: {other} {body}"),
        }
    }
    assert!(refused >= 5, "the limit was never reached");
    // Reads work while full, and every acknowledged point is there.
    let (s, series) = send(&app, get(&format!("/api/v1/runs/{id}/series"))).await;
    assert_eq!(s, StatusCode::OK);
    let stored = series["series"][0]["count"].as_u64().unwrap();
    eprintln!(
        "acknowledged {} batches ({} points), stored {stored} points, {refused} refused",
        acked.len(),
        acked.len() as u64 * N
    );
    assert_eq!(stored, acked.len() as u64 * N);
    let (_, pts) = send(
        &app,
        get(&format!("/api/v1/runs/{id}/scalars?key=train/loss")),
    )
    .await;
    let steps = common::steps_of(&pts);
    let want: Vec<u64> = acked.iter().flat_map(|i| i * N..(i + 1) * N).collect();
    assert_eq!(steps, want, "exactly the acknowledged batches");

    // Space returns (the filler's chunks are deleted): the same store writes again.
    let freed = Instant::now();
    sqlx::query(
        "DELETE FROM scalar_chunks WHERE series_id IN (SELECT id FROM series WHERE run_id = $1)",
    )
    .bind(&filler)
    .execute(store.pool())
    .await
    .unwrap();
    let mut resumed = None;
    for attempt in 0..50u64 {
        let req = post(
            &format!("/api/v1/runs/{id}/scalars"),
            "application/json",
            batch(10_000_000 + attempt * 10, 10),
        );
        if send(&app, req).await.0 == StatusCode::OK {
            resumed = Some(freed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = resumed.expect("writes resume once space is free");
    eprintln!("writes resumed {resumed:?} after space was freed");
    let (s, _) = send(&app, post_json("/api/v1/runs", &json!({"project":"after"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(check, "ok");
}

/// Two stores on one SQLite file — as two processes would have — write at
/// once: every batch succeeds (writers wait their turn instead of failing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_sqlite_file_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let a = Arc::new(Store::connect(&url).await.unwrap());
    let b = Arc::new(Store::connect(&url).await.unwrap());
    let apps = [a, b].map(|s| app::router(AppState::new(s, "http://t", DEFAULT_MAX_BODY_BYTES)));
    let run = send(&apps[0], post_json("/api/v1/runs", &json!({"project":"p"})))
        .await
        .1;
    let id = run["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let app = apps[(w % 2) as usize].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..40u64 {
                let req = post(
                    &format!("/api/v1/runs/{id}/scalars"),
                    "application/json",
                    batch((w * 40 + i) * 500, 500),
                );
                if send(&app, req).await.0 != StatusCode::OK {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    assert_eq!(failed, 0, "writers on one file must wait, not fail");
    let series = send(&apps[1], get(&format!("/api/v1/runs/{id}/series")))
        .await
        .1;
    assert_eq!(series["series"][0]["count"], 4 * 40 * 500);
}

/// PostgreSQL out of reach: a write is answered 503 with `Retry-After` in
/// about the acquire timeout (2 s), `/healthz` stays 200 and `/readyz` 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_is_a_quick_503() {
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL unset: skipping");
        return;
    };
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    let state = db.state();
    let app = app::router(state);
    let (s, run) = send(&app, post_json("/api/v1/runs", &json!({"project":"p"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let id = run["id"].as_str().unwrap().to_string();
    // Make the database unreachable for this store: every pooled
    // connection is closed and new ones cannot be opened.
    db.store.close().await;
    let started = Instant::now();
    let (s, body) = send(
        &app,
        post(
            &format!("/api/v1/runs/{id}/scalars"),
            "application/json",
            batch(0, 10),
        ),
    )
    .await;
    let took = started.elapsed();
    eprintln!("503 after {took:?}: {body}");
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(send(&app, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(
        send(&app, get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let _ = base;
    db.cleanup().await;
}
