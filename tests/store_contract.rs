//! Contract of `Store`, run on SQLite always and on PostgreSQL when
//! `TEST_DATABASE_URL` is set.

mod common;

use common::TestDb;
use serde_json::json;
use trainlens::ingest::{self, RunLine};
use trainlens::model::{Batch, NewRun, Point, RunFilter, RunStatus};
use trainlens::record::{DatasetRecord, HistogramRecord, ModelRecord, Record};
use trainlens::store::{Store, StoreError, StoreOptions};

fn new_run(project: &str, name: &str) -> NewRun {
    NewRun {
        tags: vec!["x".into()],
        ..common::new_run(project, name, json!({"lr": 0.1, "b": [1, 2]}))
    }
}

/// Points at `steps` with values `f(step)`, logged every quarter second.
fn points(steps: impl IntoIterator<Item = u64>, f: impl Fn(u64) -> f64) -> Vec<Point> {
    let mut pts = common::points(steps, f);
    for p in &mut pts {
        p.time = Some(1_700_000_000.0 + p.step as f64 * 0.25);
    }
    pts
}

fn scalars(key: &str, pts: Vec<Point>) -> Batch {
    let mut b = Batch::default();
    b.scalars.insert(key.into(), pts);
    b
}

on_both_backends! {
    async fn runs_table_and_sparklines(db: &TestDb) {
        use trainlens::model::{Health, RunSort, RunTableQuery};
        let s = &db.store;
        let long = s.create_run(&new_run("p", "long")).await.unwrap();
        let short = s.create_run(&new_run("p", "short")).await.unwrap();
        // 40 chunks with a NaN in the middle; a short series of one chunk.
        let n = 40 * 4096;
        s.ingest(long.id, &scalars("train/loss", points(0..n, |x| if x == n / 2 { f64::NAN } else { 1.0 / (1.0 + x as f64) })), None).await.unwrap();
        s.ingest(short.id, &scalars("loss", points(0..100, |x| x as f64)), None).await.unwrap();
        let sparks = s.sparklines(&[(long.id, "train/loss"), (short.id, "loss"), (short.id, "nope")], 60).await.unwrap();
        let (l, sh) = (&sparks[&long.id], &sparks[&short.id]);
        assert!(l.len() <= 150 && l.len() >= 20, "bounded: {}", l.len());
        assert!(l.iter().any(|p| p.value.is_nan()), "the NaN survives");
        assert_eq!((l[0].step, l[l.len() - 1].step), (0, n - 1));
        assert!(l.windows(2).all(|w| w[0].step < w[1].step));
        assert!(sh.len() <= 60 && sh.len() >= 20, "short series read from its points: {}", sh.len());
        assert!(s.sparklines(&[], 60).await.unwrap().is_empty());

        let series = s.series_of_runs(&[long.id, short.id]).await.unwrap();
        assert_eq!(series[&short.id][0].key, "loss");
        assert_eq!(series[&long.id][0].count as u64, n);

        let q = RunTableQuery { project: Some("p".into()), sort: RunSort::Name, limit: 1, ..Default::default() };
        let t = s.run_table(&q).await.unwrap();
        assert_eq!((t.total, t.rows.len(), t.rows[0].run.name.as_str()), (2, 1, "long"));
        assert_eq!((t.rows[0].worst, t.rows[0].open), (None, 0));
        let t = s.run_table(&RunTableQuery { offset: 5, ..q.clone() }).await.unwrap();
        assert_eq!((t.total, t.rows.len()), (2, 0), "past the end: still counted");
        let t = s.run_table(&RunTableQuery { health: Some(Health::Critical), ..q.clone() }).await.unwrap();
        assert_eq!(t.total, 0);
        let t = s.run_table(&RunTableQuery { search: Some("HOR".into()), limit: 10, ..q }).await.unwrap();
        assert_eq!(t.rows.iter().map(|r| r.run.name.as_str()).collect::<Vec<_>>(), ["short"]);
    }

    async fn runs_are_created_listed_and_filtered(db: &TestDb) {
        let s = &db.store;
        let a = s.create_run(&new_run("vision", "a")).await.unwrap();
        let b = s.create_run(&new_run("vision", "b")).await.unwrap();
        let c = s.create_run(&new_run("nlp", "c")).await.unwrap();
        assert_eq!(a.status, RunStatus::Running);
        assert_eq!(a.config.as_ref().map(|c| c.parse()), Some(json!({"lr": 0.1, "b": [1, 2]})));
        assert_eq!(a.tags, vec!["x".to_string()]);
        assert_eq!(s.get_run(b.id).await.unwrap().unwrap(), b);
        assert!(s.get_run(uuid::Uuid::new_v4()).await.unwrap().is_none());

        let list = |project: Option<&str>, status, limit, offset| {
            let f = RunFilter { project: project.map(Into::into), status, limit, offset, with_config: false };
            async move { s.list_runs(&f).await.unwrap().into_iter().map(|r| r.name).collect::<Vec<_>>() }
        };
        assert_eq!(list(None, None, 10, 0).await, ["c", "b", "a"]);
        assert_eq!(list(Some("vision"), None, 10, 0).await, ["b", "a"]);
        assert_eq!(list(Some("vision"), None, 1, 1).await, ["a"]);
        s.finish_run(c.id, RunStatus::Failed, Some(7)).await.unwrap();
        assert_eq!(list(None, Some(RunStatus::Failed), 10, 0).await, ["c"]);
        assert_eq!(list(None, Some(RunStatus::Running), 10, 0).await, ["b", "a"]);
        // Lists leave configs off unless asked, and then give them as stored.
        let listed = |with_config| {
            let f = RunFilter { project: Some("vision".into()), limit: 10, with_config, ..Default::default() };
            async move { s.list_runs(&f).await.unwrap() }
        };
        assert!(listed(false).await.iter().all(|r| r.config.is_none()));
        let full = listed(true).await;
        assert_eq!(full[1], a);
        assert_eq!(full[1].config.as_ref().unwrap().text(), r#"{"lr":0.1,"b":[1,2]}"#);

        let projects = s.list_projects().await.unwrap();
        let summary: Vec<_> = projects.iter().map(|p| (p.name.as_str(), p.runs)).collect();
        assert_eq!(summary, [("nlp", 1), ("vision", 2)]);
    }

    async fn a_batch_past_max_keys_per_run_is_refused_whole(db: &TestDb) {
        let opts = StoreOptions { max_keys_per_run: 3, ..StoreOptions::default() };
        let s = Store::connect_with(&db.url, &opts).await.unwrap();
        let run = s.create_run(&new_run("p", "r")).await.unwrap();
        let mut two = scalars("a", points(0..10, |x| x as f64));
        two.scalars.insert("b".into(), points(0..10, |_| 1.0));
        s.ingest(run.id, &two, None).await.unwrap();

        // Two new keys would make four: nothing of the batch is written,
        // not even the points of the key that exists, nor its idempotency key.
        let mut over = scalars("c", points(0..10, |_| 2.0));
        over.scalars.insert("d".into(), points(0..10, |_| 3.0));
        over.scalars.insert("a".into(), points(10..20, |x| x as f64));
        match s.ingest(run.id, &over, Some("k1")).await {
            Err(StoreError::TooLarge { field, message }) => {
                assert_eq!(field, "key");
                assert!(message.contains("max_keys_per_run") && message.contains('3'), "{message}");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let keys: Vec<String> = s.series(run.id).await.unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(s.points(run.id, "a", None, None).await.unwrap().unwrap().len(), 10);

        // Existing keys keep taking points, and one more key fits.
        let mut fits = scalars("a", points(10..20, |x| x as f64));
        fits.scalars.insert("c".into(), points(0..10, |_| 2.0));
        s.ingest(run.id, &fits, Some("k1")).await.unwrap();
        assert_eq!(s.points(run.id, "a", None, None).await.unwrap().unwrap().len(), 20);
        assert_eq!(s.series(run.id).await.unwrap().len(), 3);
        s.close().await;
    }

    async fn scalars_merge_and_replace(db: &TestDb) {
        let s = &db.store;
        let run = s.create_run(&new_run("p", "r")).await.unwrap();
        // 10k points across three chunks, sent in two overlapping batches.
        s.ingest(run.id, &scalars("train/loss", points(0..6000, |x| x as f64)), None).await.unwrap();
        s.ingest(run.id, &scalars("train/loss", points(5000..10_000, |x| -(x as f64))), None).await.unwrap();
        let got = s.points(run.id, "train/loss", None, None).await.unwrap().unwrap();
        assert_eq!(got.len(), 10_000);
        assert!(got.windows(2).all(|w| w[1].step == w[0].step + 1));
        assert_eq!(got[4999].value, 4999.0);
        assert_eq!(got[5000].value, -5000.0);
        assert_eq!(got[9999].time, Some(1_700_000_000.0 + 9999.0 * 0.25));

        let range = s.points(run.id, "train/loss", Some(4090), Some(4100)).await.unwrap().unwrap();
        assert_eq!(range.iter().map(|p| p.step).collect::<Vec<_>>(), (4090..=4100).collect::<Vec<_>>());

        // An earlier step arriving late does not change the last value.
        s.ingest(run.id, &scalars("train/loss", points([3], |_| 33.0)), None).await.unwrap();
        let info = s.series(run.id).await.unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!((info[0].count, info[0].first_step, info[0].last_step), (10_000, Some(0), Some(9999)));
        assert_eq!(info[0].last_value.unwrap().0, -9999.0);
        assert!(s.points(run.id, "nope", None, None).await.unwrap().is_none());
    }

    async fn nonfinite_values_are_kept(db: &TestDb) {
        let s = &db.store;
        let run = s.create_run(&new_run("p", "r")).await.unwrap();
        let vals = [1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0];
        let pts: Vec<Point> = vals.iter().enumerate().map(|(i, &v)| Point { step: i as u64 * 5, value: v, time: None }).collect();
        s.ingest(run.id, &scalars("train/loss", pts.clone()), None).await.unwrap();
        assert_eq!(s.points(run.id, "train/loss", None, None).await.unwrap().unwrap(), pts);
        let nan_last = scalars("grad_norm/fc1", points([9], |_| f64::NAN));
        s.ingest(run.id, &nan_last, None).await.unwrap();
        let info = s.series(run.id).await.unwrap();
        assert!(info.iter().find(|i| i.key == "grad_norm/fc1").unwrap().last_value.unwrap().0.is_nan());
    }

    async fn idempotency_key_makes_a_retry_a_no_op(db: &TestDb) {
        let s = &db.store;
        let run = s.create_run(&new_run("p", "r")).await.unwrap();
        let first = s.ingest(run.id, &scalars("a", points(0..10, |x| x as f64)), Some("batch-1")).await.unwrap();
        assert_eq!((first.accepted, first.replayed), (10, false));
        let again = s.ingest(run.id, &scalars("a", points(0..10, |_| 99.0)), Some("batch-1")).await.unwrap();
        assert_eq!((again.accepted, again.replayed), (10, true));
        let got = s.points(run.id, "a", None, None).await.unwrap().unwrap();
        assert_eq!(got[3].value, 3.0, "the retried batch must not be applied");
        let other = s.create_run(&new_run("p", "other")).await.unwrap();
        assert!(!s.ingest(other.id, &scalars("a", points(0..1, |_| 1.0)), Some("batch-1")).await.unwrap().replayed);
    }

    async fn unknown_run_stores_nothing(db: &TestDb) {
        let s = &db.store;
        let missing = uuid::Uuid::new_v4();
        let err = s.ingest(missing, &scalars("a", points(0..3, |x| x as f64)), None).await.unwrap_err();
        assert!(matches!(err, StoreError::RunNotFound));
        assert!(matches!(s.heartbeat(missing).await.unwrap_err(), StoreError::RunNotFound));
        assert!(matches!(s.export(missing).await.unwrap_err(), StoreError::RunNotFound));
        assert!(s.series(missing).await.unwrap().is_empty());
    }

    async fn histograms_model_datasets_and_status(db: &TestDb) {
        let s = &db.store;
        let run = s.create_run(&new_run("p", "r")).await.unwrap();
        let mut b = Batch::default();
        for step in [10, 20] {
            b.histograms.push(HistogramRecord { step, key: "weights/fc1".into(), edges: vec![0.0, 0.5, 1.0], counts: vec![step, 1], nonfinite: 0 });
        }
        b.histograms.push(HistogramRecord { step: 20, key: "grads/fc1".into(), edges: vec![], counts: vec![], nonfinite: 64 });
        let model: ModelRecord = serde_json::from_value(json!({"layers":[{"name":"fc1","type":"Linear","in":4,"out":2,"activation":"relu"}],"loss":"mse","framework":"torch"})).unwrap();
        b.model = Some(model.clone());
        b.datasets.push(serde_json::from_value::<DatasetRecord>(json!({"split":"train","n":100,"feature_mean":[0.5,"NaN"],"class_counts":{"1":60,"0":40}})).unwrap());
        s.ingest(run.id, &b, None).await.unwrap();
        // Re-sending a histogram step replaces it.
        let mut again = Batch::default();
        again.histograms.push(HistogramRecord { step: 20, key: "weights/fc1".into(), edges: vec![0.0, 2.0], counts: vec![5], nonfinite: 1 });
        s.ingest(run.id, &again, None).await.unwrap();

        let keys = s.histogram_keys(run.id).await.unwrap();
        assert_eq!(keys.iter().map(|k| (k.key.as_str(), k.count)).collect::<Vec<_>>(), [("grads/fc1", 1), ("weights/fc1", 2)]);
        let w = s.histograms(run.id, Some("weights/fc1")).await.unwrap();
        assert_eq!((w.len(), w[1].counts.clone(), w[1].nonfinite), (2, vec![5], 1));
        assert_eq!(s.model(run.id).await.unwrap(), Some(model));
        let ds = s.datasets(run.id).await.unwrap();
        assert!(ds[0].feature_mean.as_ref().unwrap()[1].0.is_nan());
        assert_eq!(serde_json::to_value(&ds[0]).unwrap()["class_counts"], json!({"1":60,"0":40}));

        let before = s.get_run(run.id).await.unwrap().unwrap();
        let beat = s.heartbeat(run.id).await.unwrap();
        assert!(beat.heartbeat_at >= before.heartbeat_at);
        let done = s.finish_run(run.id, RunStatus::Finished, Some(20)).await.unwrap();
        assert_eq!((done.status, done.end_step), (RunStatus::Finished, Some(20)));
        assert!(done.data_version > before.data_version);
    }

    async fn silent_runs_are_marked_crashed_and_revive(db: &TestDb) {
        let s = &db.store;
        let live = s.create_run(&new_run("p", "live")).await.unwrap();
        let done = s.create_run(&new_run("p", "done")).await.unwrap();
        s.finish_run(done.id, RunStatus::Finished, None).await.unwrap();
        assert_eq!(s.mark_crashed(3600.0).await.unwrap(), 0, "nothing is an hour old");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(s.mark_crashed(0.0).await.unwrap(), 1);
        let crashed = s.get_run(live.id).await.unwrap().unwrap();
        assert_eq!(crashed.status, RunStatus::Crashed);
        assert!(crashed.data_version > live.data_version, "a crash is re-diagnosed");
        assert_eq!(s.get_run(done.id).await.unwrap().unwrap().status, RunStatus::Finished);
        assert_eq!(s.heartbeat(live.id).await.unwrap().status, RunStatus::Running);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        s.mark_crashed(0.0).await.unwrap();
        s.ingest(live.id, &scalars("a", points(0..1, |_| 1.0)), None).await.unwrap();
        assert_eq!(s.get_run(live.id).await.unwrap().unwrap().status, RunStatus::Running, "new data revives it");
    }

    async fn every_write_a_page_shows_is_news_to_the_live_polls(db: &TestDb) {
        use trainlens::store::mlflow::{MlBatch, MlMetric, MlNewRun, MlRunUpdate, NewMetric};
        let s = &db.store;
        let t0 = trainlens::store::now();
        let run = s.create_run(&new_run("p", "r")).await.unwrap();
        let other = s.create_run(&new_run("elsewhere", "o")).await.unwrap();
        let in_p: Vec<_> = s.changed_runs(Some("p"), t0 - 1.0).await.unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(in_p, [run.id], "a new run is news to its project's table only");
        assert_eq!(s.changed_runs(None, t0 - 1.0).await.unwrap().len(), 2);
        let mut last = Seen::of(s, run.id).await;

        s.ingest(run.id, &scalars("train/loss", points(0..3, |x| x as f64)), None).await.unwrap();
        last = last.news(s, "points").await;
        let hist = Batch { histograms: vec![HistogramRecord { key: "weights/fc".into(), step: 1, edges: vec![0.0, 1.0], counts: vec![3], nonfinite: 0 }], ..Batch::default() };
        s.ingest(run.id, &hist, None).await.unwrap();
        last = last.news(s, "a histogram").await;
        s.ingest(run.id, &scalars("train/loss", points(3..4, |x| x as f64)), Some("k1")).await.unwrap();
        last = last.news(s, "a keyed batch").await;
        // Its retry writes nothing: no news.
        s.ingest(run.id, &scalars("train/loss", points(3..4, |x| x as f64)), Some("k1")).await.unwrap();
        assert_eq!(Seen::of(s, run.id).await, last, "a replayed batch is no news");

        // The diagnosis worker's findings.
        common::eager_runner(&db.store, "http://t").diagnose(run.id).await.unwrap();
        last = last.news(s, "a diagnosis").await;
        assert_eq!(last.pulse.diagnosed_version, last.pulse.data_version);

        // Status: crashed by silence, revived by a heartbeat, finished.
        assert_eq!(s.mark_crashed(0.0).await.unwrap(), 2);
        last = last.news(s, "crashed").await;
        assert_eq!(last.pulse.status, RunStatus::Crashed);
        s.heartbeat(run.id).await.unwrap();
        last = last.news(s, "revived").await;
        assert_eq!(last.pulse.status, RunStatus::Running);
        s.heartbeat(run.id).await.unwrap();
        assert_eq!(Seen::of(s, run.id).await, last, "a heartbeat of a running run is no news");
        s.finish_run(run.id, RunStatus::Finished, Some(3)).await.unwrap();
        last = last.news(s, "finished").await;
        assert_eq!(last.pulse.status, RunStatus::Finished);
        assert!(s.changed_runs(Some("elsewhere"), last.at).await.unwrap().is_empty(), "the other run did not change since");
        let _ = other;

        // An import into a run with the same run_key (a TensorBoard import
        // does this for each directory it follows).
        let keyed = NewRun { run_key: Some("tb/run1".into()), ..new_run("p", "tb") };
        let first = s.import_run(&keyed, &scalars("loss", points(0..2, |x| x as f64))).await.unwrap();
        let mut tb = Seen::of(s, first.run.id).await;
        let again = s.import_run(&keyed, &scalars("loss", points(2..4, |x| x as f64))).await.unwrap();
        assert!(!again.created);
        tb = tb.news(s, "an import into the same run").await;
        let _ = tb;

        // MLflow: create, metrics, params, tags (the name), status.
        let (exp, _) = s.mlflow_create_experiment("p").await.unwrap();
        let t1 = trainlens::store::now();
        let ml = s.mlflow_create_run(&MlNewRun { experiment: exp, name: "ml".into(), start_time: 1, user_id: "u".into(), tags: vec![] }).await.unwrap();
        assert!(s.changed_runs(Some("p"), t1).await.unwrap().iter().any(|(id, _)| *id == ml.id), "a run created through MLflow");
        let mut m = Seen::of(s, ml.id).await;
        let metric = NewMetric { key: "loss".into(), metric: MlMetric { value: 0.5, timestamp: 1_700_000_000_000, step: 0 } };
        s.mlflow_log(ml.id, &MlBatch { metrics: vec![metric], ..MlBatch::default() }).await.unwrap();
        m = m.news(s, "an MLflow metric").await;
        s.mlflow_log(ml.id, &MlBatch { params: vec![("lr".into(), "0.1".into())], ..MlBatch::default() }).await.unwrap();
        m = m.news(s, "an MLflow param (the config)").await;
        s.mlflow_log(ml.id, &MlBatch { tags: vec![("mlflow.runName".into(), "renamed".into())], ..MlBatch::default() }).await.unwrap();
        m = m.news(s, "an MLflow name").await;
        assert_eq!(s.get_run(ml.id).await.unwrap().unwrap().name, "renamed");
        s.mlflow_update_run(&ml, &MlRunUpdate { status: Some("FAILED".into()), end_time: Some(2), name: None }).await.unwrap();
        m = m.news(s, "an MLflow status").await;
        assert_eq!(m.pulse.status, RunStatus::Failed);
    }

    async fn old_idempotency_keys_are_forgotten(db: &TestDb) {
        let s = &db.store;
        let run = s.create_run(&new_run("p", "r")).await.unwrap();
        s.ingest(run.id, &scalars("a", points(0..3, |x| x as f64)), Some("k")).await.unwrap();
        assert_eq!(s.prune_idempotency_keys(3600.0).await.unwrap(), 0);
        assert!(s.ingest(run.id, &scalars("a", points(0..3, |_| 9.0)), Some("k")).await.unwrap().replayed);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(s.prune_idempotency_keys(0.0).await.unwrap(), 1);
        assert!(!s.ingest(run.id, &scalars("a", points(0..3, |_| 9.0)), Some("k")).await.unwrap().replayed);
    }

    async fn concurrent_writers_do_not_lose_points(db: &TestDb) {
        let run = db.store.create_run(&new_run("p", "r")).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                for b in 0..5u64 {
                    // Every writer writes every series, interleaved steps.
                    let mut batch = Batch::default();
                    for key in ["a", "b"] {
                        let steps = (0..500).map(|i| (b * 500 + i) * 4 + w);
                        batch.scalars.insert(key.into(), points(steps, |x| x as f64));
                    }
                    store.ingest(run.id, &batch, None).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for key in ["a", "b"] {
            let got = db.store.points(run.id, key, None, None).await.unwrap().unwrap();
            assert_eq!(got.len(), 10_000);
            assert!(got.iter().enumerate().all(|(i, p)| p.step == i as u64 && p.value == i as f64));
        }
        assert_eq!(db.store.series(run.id).await.unwrap()[0].count, 10_000);
    }

    async fn downsampled_reads_use_chunk_envelopes_and_hide_nothing(db: &TestDb) {
        use trainlens::charts::downsample::{buckets, downsample_by_width};
        let s = &db.store;
        let run = s.create_run(&new_run("p", "r")).await.unwrap();
        let mut pts = points(0..300_000, |x| ((x * 7919) % 1000) as f64 / 1000.0);
        pts[123_456].value = 1e9;
        pts[200_001].value = f64::NAN;
        pts[250_000].value = f64::NEG_INFINITY;
        for batch in pts.chunks(10_000) {
            s.ingest(run.id, &scalars("loss", batch.to_vec()), None).await.unwrap();
        }
        for (from, to) in [(None, None), (Some(1_000), Some(290_500))] {
            let got = s.downsampled(run.id, "loss", from, to, 200).await.unwrap().unwrap();
            let inside: Vec<Point> = pts
                .iter()
                .filter(|p| p.step >= from.unwrap_or(0) && p.step <= to.unwrap_or(u64::MAX))
                .copied()
                .collect();
            assert_eq!(got.total, inside.len());
            let (origin, width) = buckets(inside[0].step, inside.last().unwrap().step, 200, 4096);
            assert_eq!(got.points, downsample_by_width(&inside, origin, width), "{from:?}..{to:?}");
            assert!(got.points.len() <= 200, "{}", got.points.len());
            assert!(got.points.iter().any(|p| p.step == 123_456 && p.value == 1e9));
            assert!(got.points.iter().any(|p| p.step == 200_001 && p.value.is_nan()));
            assert!(got.points.iter().any(|p| p.step == 250_000 && p.value == f64::NEG_INFINITY));
            assert_eq!(got.points[0].step, inside[0].step);
            assert_eq!(got.points.last().unwrap().step, inside.last().unwrap().step);
        }
        // Fewer points than asked for: all of them.
        let few = s.downsampled(run.id, "loss", Some(10), Some(19), 200).await.unwrap().unwrap();
        assert_eq!((few.total, few.points), (10, pts[10..20].to_vec()));
        assert!(s.downsampled(run.id, "nope", None, None, 10).await.unwrap().is_none());
    }

    async fn every_fixture_survives_import_export_import(db: &TestDb) {
        for path in common::fixture_files() {
            let text = std::fs::read(&path).unwrap();
            let original = ingest::parse_ndjson(&text, RunLine::Required).unwrap();
            let run = db.store.import(&original.run.clone().unwrap().into(), &original.batch).await.unwrap();
            let exported = trainlens::record::to_ndjson(&db.store.export(run.id).await.unwrap());
            let back = ingest::parse_ndjson(exported.as_bytes(), RunLine::Required).unwrap();
            assert_eq!(normalise(back.clone()), normalise(original), "{}", path.display());

            let again = db.store.import(&back.run.clone().unwrap().into(), &back.batch).await.unwrap();
            let exported_again = trainlens::record::to_ndjson(&db.store.export(again.id).await.unwrap());
            assert_eq!(exported, exported_again, "{}: export is not stable", path.display());
            assert!(exported.lines().all(|l| serde_json::from_str::<Record>(l).is_ok()));
        }
    }
}

/// A recording in a canonical order: points by step (last write wins),
/// histograms by key and step, datasets by split.
fn normalise(mut r: ingest::Recording) -> ingest::Recording {
    for pts in r.batch.scalars.values_mut() {
        pts.sort_by_key(|p| p.step);
        let mut out: Vec<Point> = Vec::with_capacity(pts.len());
        for p in pts.drain(..) {
            match out.last_mut() {
                Some(last) if last.step == p.step => *last = p,
                _ => out.push(p),
            }
        }
        *pts = out;
    }
    r.batch
        .histograms
        .sort_by(|a, b| (&a.key, a.step).cmp(&(&b.key, b.step)));
    r.batch.datasets.sort_by(|a, b| a.split.cmp(&b.split));
    r
}

/// What the live pages' streams poll of one run: its pulse (a run page's)
/// and its `changed_at` (the runs table's).
#[derive(Debug, PartialEq)]
struct Seen {
    run: uuid::Uuid,
    pulse: trainlens::store::live::RunPulse,
    at: f64,
}

impl Seen {
    /// Read, then a short wait, so that the next write's clock is later.
    async fn of(s: &Store, run: uuid::Uuid) -> Seen {
        let pulse = s.run_pulse(run).await.unwrap().expect("the run exists");
        let at = s
            .changed_runs(None, 0.0)
            .await
            .unwrap()
            .into_iter()
            .find(|(id, _)| *id == run)
            .expect("every run has changed once")
            .1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        Seen { run, pulse, at }
    }

    /// After a write: both moved.
    async fn news(self, s: &Store, what: &str) -> Seen {
        let now = Seen::of(s, self.run).await;
        assert_ne!(now.pulse, self.pulse, "{what}: a run page's stream sees it");
        assert!(now.at > self.at, "{what}: the runs table's stream sees it");
        now
    }
}
