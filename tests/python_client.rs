//! The Python client (`clients/python`) against a live server.

mod common;

use std::process::Command;

use common::{LiveServer, TestDb};

/// The torch tests CI must run (it installs torch).
const TORCH_TESTS: &[&str] = &[
    "test_mlp_names_steps_model_record_and_unwatch",
    "test_nan_gradients_arrive_as_nan_and_a_forgotten_step_as_a_zero_update",
    "test_cnn_lstm_and_transformer_names",
    "test_dataset_summary_from_arrays_and_a_loader",
    // The demo: every fault caught, on 3 seeds.
    "test_none",
    "test_lr_too_high",
    "test_vanishing",
    "test_overfit",
    "test_dead_relu",
    "test_imbalance",
    "test_no_optimizer_step",
    "test_softmax_before_ce",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_talks_to_a_live_server() {
    let python = common::python();
    if !common::python_runs(&python, "pass") {
        assert!(std::env::var_os("CI").is_none(), "CI needs {python}");
        eprintln!("{python} not found: skipping");
        return;
    }
    let db = TestDb::sqlite().await;
    // With the runner: the demo's tests wait for each run's diagnosis.
    let server = LiveServer::with_eager_runner(db.state()).await;

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python");
    // pytest when it is there (CI's virtualenv has it), else unittest: both
    // run every test file; -v names each test with its outcome.
    let pytest = Command::new(&python)
        .args(["-c", "import pytest"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        pytest || std::env::var_os("CI").is_none(),
        "CI needs pytest in {python}"
    );
    let args: &[&str] = if pytest {
        &[
            "-m",
            "pytest",
            "tests",
            "-v",
            "-rs",
            "-p",
            "no:cacheprovider",
        ]
    } else {
        &["-m", "unittest", "discover", "-s", "tests", "-v"]
    };
    let mut tests = Command::new(&python);
    tests
        .args(args)
        .current_dir(dir)
        .env("PYTHONPATH", dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TRAINLENS_TEST_SERVER", &server.base)
        .env("TRAINLENS_BIN", env!("CARGO_BIN_EXE_trainlens"))
        .env(
            "TRAINLENS_DIR",
            std::env::temp_dir().join("trainlens-test-spool"),
        );
    let out = common::output_of(tests).await;
    let report = common::output_text(&out);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "the Python client's tests failed:\n{report}"
    );
    // The tests that must have run, not skipped, wherever this runs; in CI
    // (which installs torch) the torch ones too.
    let mut must_pass = vec![
        "test_a_run_with_nan_histograms_model_and_dataset",
        "test_an_offline_run_is_synced_once_however_often_it_is_synced",
        "test_an_interrupted_sync_is_completed_without_duplicates",
        "test_a_server_killed_mid_run_loses_and_duplicates_nothing",
    ];
    if std::env::var_os("CI").is_some() {
        must_pass.extend(TORCH_TESTS);
    }
    for name in must_pass {
        // pytest: "…::name PASSED"; unittest: "name (…) ... ok", where the
        // test's own output may come between (the whole run succeeded, so
        // a test that ran and was not skipped passed).
        let passed = if pytest {
            report
                .lines()
                .any(|l| l.contains(name) && l.contains("PASSED"))
        } else {
            report.contains(name)
                && !report
                    .lines()
                    .any(|l| l.contains(name) && l.contains("skipped"))
        };
        assert!(passed, "{name} did not pass:\n{report}");
    }

    server.stop().await;
    db.cleanup().await;
}
