//! The Python client (`clients/python`) against a live server.

mod common;

use std::process::Command;

use common::TestDb;
use trainlens::app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_talks_to_a_live_server() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&python).arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI needs {python}");
        eprintln!("{python} not found: skipping");
        return;
    }
    let db = TestDb::sqlite().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(listener, db.state(), async {
        let _ = stopped.await;
    }));

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-m", "unittest", "discover", "-s", "tests", "-v"])
            .current_dir(dir)
            .env("PYTHONPATH", dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("TRAINLENS_TEST_SERVER", &base)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "the Python client's tests failed:\n{report}"
    );
    assert!(report.contains("Ran 10 tests"), "{report}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    db.cleanup().await;
}
