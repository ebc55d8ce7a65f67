//! `trainlens serve` (and a bare `trainlens`): the server, its runner and
//! its alert sender.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use crate::alerts::sender::SenderConfig;
use crate::app::{self, DEFAULT_MAX_BODY_BYTES};
use crate::http::AppState;
use crate::http::Live;
use crate::http::state::LIVE_KEEP_ALIVE;
use crate::runner::RunnerConfig;

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TRAINLENS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Largest accepted request body in bytes, after decompression.
    #[arg(long, env = "TRAINLENS_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Allow listening on a non-loopback address although trainlens has no
    /// authentication yet (put it behind a proxy that authenticates).
    #[arg(long, env = "TRAINLENS_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Bearer token that unlocks the operator endpoints (`/api/v1/webhooks`).
    /// Without it they are off.
    #[arg(long, env = "TRAINLENS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Mark a running run crashed after this many seconds without data or a
    /// heartbeat (0: never). New data or a heartbeat makes it running again.
    #[arg(long, env = "TRAINLENS_CRASH_AFTER", default_value_t = 900)]
    pub crash_after: u64,
    /// How often a live page's event stream asks the database whether its
    /// run (or the runs table) changed, in milliseconds: the longest a page
    /// waits for new data, and one small read per open page each time.
    #[arg(long, env = "TRAINLENS_LIVE_POLL_MS", default_value_t = crate::http::state::LIVE_POLL.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub live_poll_ms: u64,
    /// Live pages' event streams open at once in this process (0: live
    /// updates off); past that a page gets a 503 for its stream and stays
    /// as it was drawn.
    #[arg(long, env = "TRAINLENS_LIVE_STREAMS", default_value_t = crate::http::state::LIVE_STREAMS)]
    pub live_streams: usize,
}

pub async fn serve(global: &super::Global, args: ServeArgs) -> anyhow::Result<()> {
    if !args.bind.ip().is_loopback() && !args.allow_unauthenticated {
        bail!(
            "refusing to listen on {} without authentication: anyone who can reach it could read and write \
             every run. Bind 127.0.0.1, or pass --allow-unauthenticated behind an authenticating proxy.",
            args.bind
        );
    }
    let store = Arc::new(global.open_store().await?);
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let public_url = global
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    tracing::info!(%addr, backend = ?store.backend(), "trainlens listening on http://{addr}");
    let state = AppState::new(store.clone(), &public_url, args.max_body_bytes)
        .with_admin_token(args.admin_token.as_deref())
        .with_database_name(&crate::store::describe_database_url(&global.database_url))
        .with_limits(global.limits.clone())
        .with_live(Live::new(
            std::time::Duration::from_millis(args.live_poll_ms),
            LIVE_KEEP_ALIVE,
            args.live_streams,
        ));
    let mut runner = RunnerConfig::new(&public_url);
    runner.crash_after =
        (args.crash_after > 0).then(|| std::time::Duration::from_secs(args.crash_after));
    app::serve_with_background(
        listener,
        state,
        runner,
        SenderConfig::default(),
        app::shutdown_signal(),
    )
    .await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
