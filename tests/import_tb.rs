//! `trainlens import-tb` end to end: event files written by tensorboardX and
//! torch.utils.tensorboard (with `$PYTHON`), damaged files, re-imports and
//! `--follow`, each checked in the SQLite database the binary wrote.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use trainlens::model::RunFilter;
use trainlens::store::{Store, records::StepKind};
use trainlens::tensorboard::framing::{Frame, Reader, frame};
use trainlens::tensorboard::proto::{Event, Summary, SummaryValue, ValueKind, What};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_trainlens");

/// Runs `trainlens --database-url DB import-tb ARGS…`: success and
/// stdout + stderr.
fn import_tb(db: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["--database-url", db, "import-tb"])
        .args(args)
        .output()
        .unwrap();
    let text = common::output_text(&out);
    eprintln!("import-tb {args:?}:\n{text}");
    (out.status.success(), text)
}

fn scalar_event(step: i64, tag: &str, value: f32) -> Vec<u8> {
    let event = Event {
        wall_time: 1.7e9 + step as f64,
        step,
        what: Some(What::Summary(Summary {
            value: vec![SummaryValue {
                tag: tag.into(),
                metadata: None,
                value: Some(ValueKind::SimpleValue(value)),
            }],
        })),
    };
    frame(&event.encode_to_vec())
}

fn version_event() -> Vec<u8> {
    let event = Event {
        wall_time: 1.7e9,
        step: 0,
        what: Some(What::FileVersion("brain.Event:2".into())),
    };
    frame(&event.encode_to_vec())
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

async fn run_named(store: &Store, name: &str) -> Option<trainlens::model::Run> {
    let runs = store
        .list_runs(&RunFilter {
            limit: 1000,
            with_config: true,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    runs.into_iter().find(|r| r.name == name)
}

async fn points(store: &Store, run: Uuid, key: &str) -> Vec<(u64, f64)> {
    store
        .points(run, key, None, None)
        .await
        .unwrap()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.step, p.value))
        .collect()
}

async fn point_total(store: &Store, run: Uuid) -> i64 {
    store
        .series(run)
        .await
        .unwrap()
        .iter()
        .map(|s| s.count)
        .sum()
}

/// The data records of an event file: (offset, length of the framed record).
fn records(file: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Reader::new(file, 0)
        .map(|f| match f {
            Frame::Record { offset, data } => (offset as usize, data.len() + 16),
            other => panic!("an intact file: {other:?}"),
        })
        .collect();
    out.remove(0); // the file_version event
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensorboardx_and_torch_event_files_arrive_whole() {
    let python = common::python();
    if !common::python_runs(&python, "import tensorboardX, numpy") {
        eprintln!("{python} has no tensorboardX (or numpy): skipping the tensorboardX import test");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let logdir = tmp.path().join("logs");
    let db = format!("sqlite://{}", tmp.path().join("tb.db").display());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tb/write_events.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&logdir)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the writer failed");
    let expected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let torch = expected.get("torch").is_some();
    assert!(
        torch || std::env::var_os("CI").is_none(),
        "CI installs tensorboard, so torch.utils.tensorboard must be tested"
    );

    let (ok, text) = import_tb(&db, &[logdir.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(!text.contains("warning"), "nothing to warn about: {text}");
    let store = Store::connect(&db).await.unwrap();
    for (name, want) in expected.as_object().unwrap() {
        let run = run_named(&store, name)
            .await
            .unwrap_or_else(|| panic!("run {name}"));
        assert_eq!(run.run_key.as_deref(), Some(name.as_str()));
        for (key, rows) in want["scalars"].as_object().unwrap() {
            let want: Vec<(u64, f64)> = rows
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r[0].as_u64().unwrap(), r[1].as_f64().unwrap()))
                .collect();
            assert_eq!(points(&store, run.id, key).await, want, "{name} {key}");
        }
        let stored = store
            .points(run.id, "train/loss", None, None)
            .await
            .unwrap();
        if let Some(p) = stored.and_then(|p| p.first().copied()) {
            let t = p.time.expect("wall time becomes the point time");
            assert!((t - trainlens::store::now()).abs() < 600.0, "{t}");
        }
        for (key, rows) in want["histograms"].as_object().unwrap() {
            let got = store.histograms(run.id, Some(key)).await.unwrap();
            let rows = rows.as_array().unwrap();
            assert_eq!(got.len(), rows.len(), "{name} {key}");
            for (h, r) in got.iter().zip(rows) {
                assert_eq!(h.step, r[0].as_u64().unwrap(), "{key}");
                let n: u64 = h.counts.iter().sum::<u64>() + h.nonfinite;
                assert_eq!(
                    n,
                    r[1].as_u64().unwrap(),
                    "{key} step {}: every value counted",
                    h.step
                );
                assert_eq!(h.edges.len(), h.counts.len() + 1);
                assert_eq!(
                    h.edges[0],
                    r[2].as_f64().unwrap(),
                    "{key}: min is the left edge"
                );
                assert_eq!(
                    *h.edges.last().unwrap(),
                    r[3].as_f64().unwrap(),
                    "{key}: max is the right edge"
                );
            }
        }
        for key in want["images"].as_array().unwrap() {
            let key = key.as_str().unwrap();
            let imgs = store
                .step_records(run.id, StepKind::Image, key, None, None, 10)
                .await
                .unwrap();
            assert_eq!(imgs.len(), 1, "{key}");
            let trainlens::record::Record::Image(img) = &imgs[0] else {
                panic!()
            };
            assert!(
                img.png.as_deref().unwrap().starts_with("iVBORw0KGgo"),
                "a PNG"
            );
        }
        let config = run.config.unwrap().parse();
        for (k, v) in want["hparams"].as_object().unwrap() {
            assert_eq!(&config[k], v, "{name} config {k}");
        }
    }

    // Again: nothing new, nothing twice.
    let tbx = run_named(&store, "tbx").await.unwrap();
    let before = point_total(&store, tbx.id).await;
    let (ok, text) = import_tb(&db, &[logdir.to_str().unwrap()]);
    assert!(
        ok && !text.contains("scalars"),
        "nothing new to report: {text}"
    );
    assert_eq!(point_total(&store, tbx.id).await, before);
    assert_eq!(
        store
            .list_runs(&RunFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        expected.as_object().unwrap().len()
    );

    // Appended records (as a writer flushing more) are picked up, alone.
    let file = std::fs::read_dir(logdir.join("tbx"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .unwrap();
    let mut more = Vec::new();
    for step in 100..110 {
        more.extend(scalar_event(step, "train/loss", step as f32 / 1000.0));
    }
    append(&file, &more);
    let (ok, text) = import_tb(&db, &[logdir.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("tbx: run") && text.contains(": 10 scalars"),
        "only the new ones: {text}"
    );
    assert_eq!(point_total(&store, tbx.id).await, before + 10);
    let loss = points(&store, tbx.id, "train/loss").await;
    assert_eq!(loss.last(), Some(&(109, f64::from(109f32 / 1000.0))));

    // Without the state file, everything is read again and nothing doubles.
    std::fs::remove_file(logdir.join(".trainlens-tb-state.json")).unwrap();
    let (ok, text) = import_tb(&db, &[logdir.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert_eq!(point_total(&store, tbx.id).await, before + 10);

    // A flipped byte and a cut record: what is intact arrives, the output
    // names the file and the byte offset of what was skipped.
    let good = std::fs::read(&file).unwrap();
    let recs = records(&good);
    let bad = tmp.path().join("bad");
    for d in ["flipped", "cut"] {
        std::fs::create_dir_all(bad.join(d)).unwrap();
    }
    let (flip_at, _) = recs[3];
    let mut flipped = good.clone();
    flipped[flip_at + 20] ^= 0x10; // inside the data of the fourth record
    let flipped_path = bad.join("flipped/events.out.tfevents.1.test");
    std::fs::write(&flipped_path, &flipped).unwrap();
    let (cut_at, cut_len) = recs[recs.len() - 5];
    let cut_path = bad.join("cut/events.out.tfevents.1.test");
    std::fs::write(&cut_path, &good[..cut_at + cut_len / 2]).unwrap();
    let (ok, text) = import_tb(&db, &[bad.to_str().unwrap()]);
    assert!(ok, "damage is warned about, not an error: {text}");
    assert!(
        text.contains(&format!(
            "{}: corrupt record at byte {flip_at}",
            flipped_path.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: incomplete record at byte {cut_at}",
            cut_path.display()
        )),
        "{text}"
    );
    let full = tbx_records(&store, tbx.id).await;
    let flipped_run = run_named(&store, "flipped").await.unwrap();
    assert_eq!(
        tbx_records(&store, flipped_run.id).await,
        full - 1,
        "all but the flipped record"
    );
    let cut_run = run_named(&store, "cut").await.unwrap();
    assert_eq!(
        tbx_records(&store, cut_run.id).await,
        full - 5,
        "all before the cut record"
    );
    store.close().await;
}

/// Scalar points plus histograms plus images of a run.
async fn tbx_records(store: &Store, run: Uuid) -> i64 {
    let h: i64 = store
        .histogram_keys(run)
        .await
        .unwrap()
        .iter()
        .map(|k| k.count)
        .sum();
    let i: i64 = store
        .step_record_keys(run, StepKind::Image)
        .await
        .unwrap()
        .iter()
        .map(|k| k.count)
        .sum();
    point_total(store, run).await + h + i
}

/// Kills the child when dropped (a failed assertion must not leave it).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_points(store: &Store, name: &str, n: i64) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(run) = run_named(store, name).await
            && point_total(store, run.id).await >= n
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_picks_up_files_and_records_written_after_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    let logdir: PathBuf = tmp.path().join("live");
    std::fs::create_dir_all(logdir.join("a")).unwrap();
    let db = format!("sqlite://{}", tmp.path().join("tb.db").display());
    let store = Store::connect(&db).await.unwrap(); // migrated before the child starts
    let file = logdir.join("a/events.out.tfevents.1.test");
    let mut first = version_event();
    for step in 0..5 {
        first.extend(scalar_event(step, "loss", 1.0 / (step + 1) as f32));
    }
    append(&file, &first);
    let child = Child(
        Command::new(BIN)
            .args([
                "--database-url",
                &db,
                "import-tb",
                "--follow",
                "--interval",
                "0.2",
            ])
            .arg(&logdir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_points(&store, "a", 5).await, "the first poll");

    // A record written in two halves: the first half is "not written yet".
    let next = scalar_event(5, "loss", 0.5);
    append(&file, &next[..7]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    append(&file, &next[7..]);
    for step in 6..10 {
        append(&file, &scalar_event(step, "loss", 0.25));
    }
    assert!(wait_for_points(&store, "a", 10).await, "appended records");
    // A new run directory, while following.
    std::fs::create_dir_all(logdir.join("b")).unwrap();
    let mut other = version_event();
    other.extend(scalar_event(0, "acc", 0.5));
    append(&logdir.join("b/events.out.tfevents.2.test"), &other);
    assert!(wait_for_points(&store, "b", 1).await, "a new directory");

    let a = run_named(&store, "a").await.unwrap();
    let loss = points(&store, a.id, "loss").await;
    assert_eq!(
        loss.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(loss[5].1, 0.5);
    let mut child = child;
    child.0.kill().unwrap();
    let out = std::mem::replace(&mut child.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    let text = common::output_text(&out);
    eprintln!("{text}");
    assert!(
        !text.contains("warning"),
        "a record being written is no warning: {text}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_server_the_records_go_in_chunks_into_one_run() {
    let db = common::TestDb::sqlite().await;
    let server = common::LiveServer::serve(db.state()).await;
    let tmp = tempfile::tempdir().unwrap();
    let logdir = tmp.path().join("exp");
    std::fs::create_dir_all(&logdir).unwrap();
    // 120,000 points: more than one 4 MiB request of NDJSON.
    let file = logdir.join("events.out.tfevents.1.test");
    let mut bytes = version_event();
    for step in 0..60_000 {
        bytes.extend(scalar_event(step, "train/loss", step as f32));
        bytes.extend(scalar_event(step, "val/loss", -(step as f32)));
    }
    append(&file, &bytes);
    let unused = format!("sqlite://{}", tmp.path().join("unused.db").display());
    let import = |args: Vec<String>| {
        let unused = unused.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            import_tb(&unused, &args)
        })
    };
    let args = vec![
        "--server".to_string(),
        server.base.clone(),
        "--project".into(),
        "tb".into(),
        logdir.display().to_string(),
    ];
    let (ok, text) = import(args.clone()).await.unwrap();
    assert!(ok, "{text}");
    assert!(
        text.contains("exp: run") && text.contains("120000 scalars"),
        "{text}"
    );
    let runs = db
        .store
        .list_runs(&RunFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        runs.len(),
        1,
        "every chunk went into the run of its run_key"
    );
    assert_eq!(
        (runs[0].project.as_str(), runs[0].run_key.as_deref()),
        ("tb", Some("exp"))
    );
    assert_eq!(point_total(&db.store, runs[0].id).await, 120_000);

    append(&file, &scalar_event(60_000, "train/loss", 1.0));
    let (ok, text) = import(args).await.unwrap();
    assert!(
        ok && text.contains(": 1 scalars"),
        "only the new record: {text}"
    );
    assert_eq!(point_total(&db.store, runs[0].id).await, 120_001);
    server.stop().await;
    db.cleanup().await;
}
