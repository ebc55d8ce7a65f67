//! Command line: `serve` (the default), `import`, `export`. Every flag can
//! also come from the environment variable named in `--help`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::app::{self, AppState, DEFAULT_MAX_BODY_BYTES};
use crate::ingest::{self, RunLine};
use crate::record;
use crate::store::{NewRun, Store};

#[derive(Debug, Parser)]
#[command(
    name = "trainlens",
    version,
    about = "Stores training metrics and tells you why a run is sick"
)]
pub struct Cli {
    /// Database: an SQLite file path or `sqlite://PATH` (created on first use),
    /// or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://trainlens.db",
        global = true
    )]
    pub database_url: String,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Import recordings (JSONL record format, optionally gzipped) as new runs.
    Import(ImportArgs),
    /// Write a run back out in the record format (NDJSON).
    Export(ExportArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TRAINLENS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Base URL of this server as users reach it, for links in API answers and
    /// alerts. Defaults to http://BIND.
    #[arg(long, env = "TRAINLENS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest accepted request body in bytes, after decompression.
    #[arg(long, env = "TRAINLENS_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Allow listening on a non-loopback address although trainlens has no
    /// authentication yet (put it behind a proxy that authenticates).
    #[arg(long, env = "TRAINLENS_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            bind: "127.0.0.1:8080".parse().expect("valid default address"),
            public_url: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allow_unauthenticated: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files to import (`.jsonl` or `.jsonl.gz`); each becomes one run.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Send to a running server (e.g. http://127.0.0.1:8080) instead of
    /// writing into the database directly.
    #[arg(long, env = "TRAINLENS_SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run id.
    pub run: Uuid,
    /// Read from a running server instead of the database.
    #[arg(long, env = "TRAINLENS_SERVER")]
    pub server: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(&cli.database_url, args).await,
        Command::Import(args) => import(&cli.database_url, args).await,
        Command::Export(args) => export(&cli.database_url, args).await,
    }
}

async fn serve(database_url: &str, args: ServeArgs) -> anyhow::Result<()> {
    if !args.bind.ip().is_loopback() && !args.allow_unauthenticated {
        bail!(
            "refusing to listen on {} without authentication: anyone who can reach it could read and write \
             every run. Bind 127.0.0.1, or pass --allow-unauthenticated behind an authenticating proxy.",
            args.bind
        );
    }
    let store = Arc::new(
        Store::connect(database_url)
            .await
            .context("opening the database")?,
    );
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    tracing::info!(%addr, backend = ?store.backend(), "trainlens listening on http://{addr}");
    let state = AppState::new(store.clone(), &public_url, args.max_body_bytes);
    app::serve(listener, state, app::shutdown_signal()).await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Reads a file, gunzipping it when it starts with the gzip magic bytes.
fn read_recording(path: &Path) -> anyhow::Result<(Vec<u8>, bool)> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("gunzipping {}", path.display()))?;
        Ok((out, true))
    } else {
        Ok((raw, false))
    }
}

async fn import(database_url: &str, args: ImportArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    let store = match &args.server {
        Some(_) => None,
        None => Some(
            Store::connect(database_url)
                .await
                .context("opening the database")?,
        ),
    };
    for path in &args.files {
        let result = match (&store, &args.server) {
            (Some(store), _) => import_local(store, path).await,
            (None, Some(server)) => import_remote(server, path).await,
            (None, None) => unreachable!(),
        };
        match result {
            Ok(line) => println!("{}: {line}", path.display()),
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e:#}", path.display());
            }
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    if failed > 0 {
        bail!("{failed} of {} files failed to import", args.files.len());
    }
    Ok(())
}

async fn import_local(store: &Store, path: &Path) -> anyhow::Result<String> {
    let (body, _) = read_recording(path)?;
    let rec = ingest::parse_ndjson(&body, RunLine::Required)?;
    let run = rec.run.expect("a recording has a run line");
    let n = rec.batch.record_count();
    let run = store.import(&NewRun::from(run), &rec.batch).await?;
    Ok(format!("run {} ({} records)", run.id, n + 1))
}

async fn import_remote(server: &str, path: &Path) -> anyhow::Result<String> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/import", server.trim_end_matches('/')))
        .header("content-type", "application/x-ndjson");
    if raw.starts_with(&[0x1f, 0x8b]) {
        req = req.header("content-encoding", "gzip");
    }
    let resp = req
        .body(raw)
        .send()
        .await
        .with_context(|| format!("sending to {server}"))?;
    let status = resp.status();
    let body: serde_json::Value = serde_json::from_str(&resp.text().await?).unwrap_or_default();
    if !status.is_success() {
        let msg = body["error"]["message"]
            .as_str()
            .unwrap_or("no error message");
        bail!("server answered {status}: {msg}");
    }
    Ok(format!(
        "run {} at {}",
        body["id"].as_str().unwrap_or("?"),
        body["url"].as_str().unwrap_or("?")
    ))
}

async fn export(database_url: &str, args: ExportArgs) -> anyhow::Result<()> {
    let text = match &args.server {
        Some(server) => {
            let url = format!(
                "{}/api/v1/runs/{}/export",
                server.trim_end_matches('/'),
                args.run
            );
            let resp = reqwest::get(&url)
                .await
                .with_context(|| format!("fetching {url}"))?;
            let status = resp.status();
            let text = resp.text().await?;
            if !status.is_success() {
                bail!("server answered {status}: {text}");
            }
            text
        }
        None => {
            let store = Store::connect(database_url)
                .await
                .context("opening the database")?;
            let records = store
                .export(args.run)
                .await
                .with_context(|| format!("exporting run {}", args.run))?;
            store.close().await;
            record::to_ndjson(&records)
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}
