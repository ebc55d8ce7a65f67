//! Connections are bounded: slow headers and idle keep-alives are closed,
//! and at most `max_connections` are served at once.

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use trainlens::app;
use trainlens::http::ConnLimits;

async fn start(db: &TestDb, limits: ConnLimits) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut state = db.state();
    state.conn = limits;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app::serve(listener, state, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Reads until the server closes the connection or `within` passes; true
/// when it closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_headers_slowly_is_cut_off() {
    let db = TestDb::sqlite().await;
    let limits = ConnLimits {
        header_read_timeout: Duration::from_millis(800),
        ..ConnLimits::default()
    };
    let (addr, _stop) = start(&db, limits).await;
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    // One header byte every 200 ms: never a whole header block.
    let dribble = async {
        for b in b"X-Slow: 1111111111111111111111111111111" {
            if slow.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    };
    let cut_off = tokio::time::timeout(Duration::from_secs(6), dribble)
        .await
        .unwrap_or(false)
        || closed_within(&mut slow, Duration::from_secs(2)).await;
    assert!(cut_off, "a dribbling client kept its connection");

    // An idle keep-alive connection is closed as well.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_and_are_served() {
    let db = TestDb::sqlite().await;
    let limits = ConnLimits {
        header_read_timeout: Duration::from_millis(1500),
        max_connections: 4,
    };
    let (addr, _stop) = start(&db, limits).await;
    // Four clients that connect and say nothing hold every slot.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = TcpStream::connect(&addr).await.unwrap();
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), fifth.read_to_end(&mut answer))
        .await
        .expect("the fifth connection is served once a slot frees")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // It was served because the server closed a silent one, not before.
    let mut any_closed = false;
    for s in &mut idle {
        any_closed |= closed_within(s, Duration::from_millis(50)).await;
    }
    assert!(
        any_closed,
        "the fifth was served while four slots were held"
    );
    db.cleanup().await;
}
