//! Real sockets: graceful shutdown in-process, and the `trainlens` binary
//! (serve, SIGTERM, import, export).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestDb;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trainlens::app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let db = TestDb::sqlite().await;
    let run = db
        .store
        .create_run(&trainlens::model::NewRun {
            project: "p".into(),
            name: "r".into(),
            config: json!({}),
            tags: vec![],
            run_key: None,
        })
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(listener, db.state(), async {
        let _ = stopped.await;
    }));

    let body = json!({"key":"train/loss","steps":[0,1,2],"values":[3.0,2.0,1.0]}).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/v1/runs/{}/scalars HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
        run.id,
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Shut down while the request is half sent.
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.is_finished(),
        "the server must wait for the request in flight"
    );
    conn.write_all(tail.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"accepted\":3"), "{response}");

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
    let pts = db
        .store
        .points(run.id, "train/loss", None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pts.len(), 3, "what was acknowledged is stored");
    db.cleanup().await;
}

/// A child process that is killed if the test fails before it stops it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn trainlens(db_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainlens"));
    cmd.env("DATABASE_URL", db_url)
        .env_remove("TRAINLENS_SERVER")
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs the command; asserts that it succeeded (printing its output if not).
fn succeeded(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Runs the command; asserts that it failed.
fn failed(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} succeeded");
    out
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} did not become healthy");
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_stops_on_sigterm_and_imports_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("t.db").display());
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = KillOnDrop(Some(
        trainlens(&db_url)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let client = trainlens::http_client().build().unwrap();
    wait_healthy(&client, &base).await;

    let (status, run) = json_of(
        client
            .post(format!("{base}/api/v1/runs"))
            .body(r#"{"project":"cli","name":"live"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["url"], format!("{base}/runs/{id}"));
    let batch = json!({"key":"val/loss","steps":[0,10,20],"values":[1.0,"NaN",0.5]});
    let (status, _) = json_of(
        client
            .post(format!("{base}/api/v1/runs/{id}/scalars"))
            .body(batch.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);

    // `import --server` with a gzipped fixture.
    let fixture = common::fixtures_dir().join("dev-healthy-digits-keras.jsonl");
    let gz = dir.path().join("keras.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(&fixture).unwrap()).unwrap();
    enc.finish().unwrap();
    let out = succeeded(
        trainlens(&db_url)
            .arg("import")
            .arg(&gz)
            .args(["--server", &base]),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("run "));

    // `export --server` streams what the server has; a failure reads the
    // server's JSON error the same way for every command.
    let remote_export = dir.path().join("remote.jsonl");
    succeeded(
        trainlens(&db_url)
            .args(["export", &id, "--server", &base, "--output"])
            .arg(&remote_export),
    );
    let remote_text = std::fs::read_to_string(&remote_export).unwrap();
    let remote_csv =
        succeeded(trainlens(&db_url).args(["export", &id, "--format", "csv", "--server", &base]))
            .stdout;
    let remote_table =
        succeeded(trainlens(&db_url).args(["export", "--project", "cli", "--server", &base]))
            .stdout;
    let missing = uuid::Uuid::new_v4().to_string();
    let out = failed(
        trainlens(&db_url)
            .args(["export", &missing, "--server", &base, "--output"])
            .arg(dir.path().join("missing.jsonl")),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server answered 404 Not Found"), "{stderr}");
    assert!(
        !dir.path().join("missing.jsonl").exists()
            && !dir.path().join("missing.jsonl.partial").exists(),
        "a failed export leaves no file"
    );
    let bad_remote = dir.path().join("bad-remote.jsonl");
    std::fs::write(&bad_remote, "{\"type\":\"run\",\"name\":\"x\"}\n{\"type\":\"scalar\",\"step\":-1,\"key\":\"a\",\"value\":1}\n").unwrap();
    let out = failed(
        trainlens(&db_url)
            .arg("import")
            .arg(&bad_remote)
            .args(["--server", &base]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server answered 422") && stderr.contains("line 2"),
        "{stderr}"
    );

    // SIGTERM: exit 0.
    let mut child = server.0.take().unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    // Export from the database file the server left behind.
    let out = succeeded(trainlens(&db_url).args(["export", &id]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(r#"{"type":"run","name":"live","project":"cli""#),
        "{text}"
    );
    assert!(
        text.contains(r#"{"type":"scalar","step":10,"key":"val/loss","value":"NaN"}"#),
        "{text}"
    );
    assert_eq!(remote_text, text, "the server's export is the database's");
    let csv = succeeded(trainlens(&db_url).args(["export", &id, "--format", "csv"])).stdout;
    assert_eq!(remote_csv, csv, "the server's CSV is the database's");
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("key,step,time,value\n"), "{csv}");
    assert!(csv.contains("\nval/loss,10,"), "{csv}");
    assert!(
        csv.trim_end().ends_with("NaN") || csv.contains(",NaN\n"),
        "{csv}"
    );
    let table = succeeded(trainlens(&db_url).args(["export", "--project", "cli"])).stdout;
    assert_eq!(remote_table, table);
    let table = String::from_utf8(table).unwrap();
    assert!(table.starts_with("id,name,status,"), "{table}");
    assert!(table.contains(&id), "{table}");
    let out = failed(trainlens(&db_url).args(["export", "--project", "nope"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no runs in project"));

    // Local import of a plain file, then export it again.
    let out = succeeded(trainlens(&db_url).arg("import").arg(&fixture));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let new_id = stdout
        .split("run ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let exported = dir.path().join("out.jsonl");
    let out = trainlens(&db_url)
        .args(["export", &new_id, "--output"])
        .arg(&exported)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines = |t: &str| t.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(
        lines(&std::fs::read_to_string(&exported).unwrap()),
        lines(&std::fs::read_to_string(&fixture).unwrap())
    );

    // A bad file fails with the line named and a non-zero exit.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"type\":\"run\",\"name\":\"x\"}\n{\"type\":\"scalar\",\"step\":-1,\"key\":\"a\",\"value\":1}\n").unwrap();
    let out = failed(trainlens(&db_url).arg("import").arg(&bad));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refuses_a_public_bind_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = trainlens(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .args(["serve", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-unauthenticated"));
}

#[test]
fn findings_and_webhook_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("t.db").display());
    let fixtures = common::fixtures_dir();
    // The healthy run, in a project of its own.
    let healthy_text =
        std::fs::read_to_string(fixtures.join("dev-healthy-digits-adam.jsonl")).unwrap();
    let (first, rest) = healthy_text.split_once('\n').unwrap();
    let mut run_line: Value = serde_json::from_str(first).unwrap();
    run_line["project"] = json!("healthy");
    let healthy_file = dir.path().join("healthy.jsonl");
    std::fs::write(&healthy_file, format!("{run_line}\n{rest}")).unwrap();
    let out = succeeded(
        trainlens(&db_url)
            .arg("import")
            .arg(fixtures.join("dev-diverge-sgd-lr5.jsonl"))
            .arg(&healthy_file),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ids: Vec<&str> = stdout
        .lines()
        .map(|l| l.split("run ").nth(1).unwrap().split(' ').next().unwrap())
        .collect();

    // The diverging run, as JSON.
    let out = succeeded(trainlens(&db_url).args(["findings", ids[0], "--json"]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"divergence"), "{kinds:?}");
    assert!(
        v["findings"][0]["fixes"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );

    // --fail-on for CI pipelines: the project with the diverged run fails...
    let out = trainlens(&db_url)
        .args(["findings", "--project", "faults", "--fail-on", "error"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("CRITICAL  divergence"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("open finding(s) at error or worse"));
    // ...the healthy one passes.
    let healthy = "healthy";
    let out = trainlens(&db_url)
        .args(["findings", ids[1]])
        .output()
        .unwrap();
    // Nothing raised: at most `info` hints (e.g. from its optimizer settings).
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.trim() == "no findings"
            || listed
                .lines()
                .filter(|l| !l.starts_with(' '))
                .all(|l| l.starts_with("INFO ")),
        "{listed}"
    );
    succeeded(trainlens(&db_url).args(["findings", "--project", healthy, "--fail-on", "warning"]));
    failed(trainlens(&db_url).args(["findings", "--fail-on", "fatal"]));

    // Webhooks.
    succeeded(trainlens(&db_url).args([
        "webhook",
        "add",
        "https://hooks.example.com/a",
        "--format",
        "discord",
        "--min-severity",
        "error",
        "--secret",
        "k",
        "--project",
        "faults",
    ]));
    let list = trainlens(&db_url)
        .args(["webhook", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.contains("https://hooks.example.com/a\tdiscord\terror+\tfaults\tsigned"),
        "{list}"
    );
    assert!(!list.contains("\tk\t"), "the secret is not shown");
    let bad = failed(trainlens(&db_url).args(["webhook", "add", "file:///etc/passwd"]));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("http or https"));
    let id = list.split('\t').next().unwrap();
    assert!(
        trainlens(&db_url)
            .args(["webhook", "remove", id])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(
        !trainlens(&db_url)
            .args(["webhook", "remove", id])
            .output()
            .unwrap()
            .status
            .success()
    );
}

/// A bare `trainlens` is `trainlens serve`: it reads the same environment
/// (it used to bind 8080 whatever `TRAINLENS_BIND` said) and flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_trainlens_serves_with_the_serve_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("bare.db").display());
    let client = trainlens::http_client().build().unwrap();
    for by_env in [true, false] {
        let port = common::free_port();
        let bind = format!("127.0.0.1:{port}");
        let mut cmd = trainlens(&db_url);
        if by_env {
            cmd.env("TRAINLENS_BIND", &bind);
        } else {
            cmd.env_remove("TRAINLENS_BIND").args(["--bind", &bind]);
        }
        let mut child = cmd.spawn().unwrap();
        let base = format!("http://{bind}");
        wait_healthy(&client, &base).await;
        let (status, run) = json_of(
            client
                .post(format!("{base}/api/v1/runs"))
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201);
        assert!(run["url"].as_str().unwrap().starts_with(&base), "{run}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// `--limit NAME=VALUE` (or `TRAINLENS_LIMITS`) changes a size limit; the
/// refusal names it. A bad assignment stops the start with a clear message.
#[tokio::test]
async fn limits_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("limits.db").display());
    let client = trainlens::http_client().build().unwrap();
    let port = common::free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = KillOnDrop(Some(
        trainlens(&db_url)
            .env("TRAINLENS_LIMITS", "max_tags=2,max_keys_per_run=1")
            .args(["serve", "--bind", &bind])
            .spawn()
            .unwrap(),
    ));
    let base = format!("http://{bind}");
    wait_healthy(&client, &base).await;
    let create = |tags: serde_json::Value| {
        client
            .post(format!("{base}/api/v1/runs"))
            .body(json!({ "tags": tags }).to_string())
            .send()
    };
    let (status, body) = json_of(create(json!(["a", "b", "c"])).await.unwrap()).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tags"),
        "{body}"
    );
    let (status, run) = json_of(create(json!(["a", "b"])).await.unwrap()).await;
    assert_eq!(status, 201, "{run}");
    let scalars = format!("{base}/api/v1/runs/{}/scalars", run["id"].as_str().unwrap());
    let send = |body: serde_json::Value| client.post(&scalars).body(body.to_string()).send();
    let (status, _) = json_of(
        send(json!({"key":"loss","steps":[0],"values":[1.0]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = json_of(
        send(json!({"key":"acc","steps":[0],"values":[1.0]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["field"], "key", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_keys_per_run"),
        "{body}"
    );
    drop(child.0.take().map(|mut c| c.kill()));

    let out = failed(trainlens(&db_url).args([
        "--limit",
        "max_tagz=3",
        "serve",
        "--bind",
        "127.0.0.1:0",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no limit \"max_tagz\"") && stderr.contains("max_tags"),
        "{stderr}"
    );
}

/// The public URL comes from one place, also where `findings` diagnoses a
/// shared database: the alerts it queues link to it, not to localhost.
#[test]
fn findings_on_a_shared_database_links_alerts_to_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(trainlens(&db_url)
        .args(["webhook", "add", "https://hooks.example.com/x"])
        .output()
        .unwrap());
    let fixture = common::fixtures_dir().join("dev-diverge-sgd-lr5.jsonl");
    let imported = ok(trainlens(&db_url)
        .arg("import")
        .arg(&fixture)
        .output()
        .unwrap());
    let id = imported
        .split_whitespace()
        .find_map(|w| uuid::Uuid::parse_str(w).ok())
        .unwrap_or_else(|| panic!("no run id in {imported:?}"));
    let out = trainlens(&db_url)
        .env("TRAINLENS_PUBLIC_URL", "https://tl.example.org")
        .args(["findings", &id.to_string()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("divergence"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bodies: Vec<String> = rt.block_on(async {
        let store = trainlens::store::Store::connect(&db_url).await.unwrap();
        sqlx::query_scalar("SELECT body FROM alert_outbox")
            .fetch_all(store.pool())
            .await
            .unwrap()
    });
    assert!(!bodies.is_empty(), "the divergence queued an alert");
    for body in bodies {
        assert!(
            body.contains(&format!("https://tl.example.org/runs/{id}")),
            "{body}"
        );
        assert!(!body.contains("127.0.0.1"), "{body}");
    }
}
