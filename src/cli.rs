//! Command line: `serve` (the default), `import`, `export`. Every flag can
//! also come from the environment variable named in `--help`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::alerts::sender::SenderConfig;
use crate::app::{self, AppState, DEFAULT_MAX_BODY_BYTES};
use crate::ingest::{self, RunLine};
use crate::model::NewRun;
use crate::model::{FindingStatus, Severity};
use crate::record;
use crate::runner::{Runner, RunnerConfig};
use crate::store::Store;
use crate::store::findings::StoredFinding;

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

    /// Base URL of the server as users reach it, for the links in API
    /// answers and alerts — wherever a diagnosis runs (`serve`, or
    /// `findings` on a shared database). Defaults to http://BIND for
    /// `serve`, http://127.0.0.1:8080 otherwise.
    #[arg(long, env = "TRAINLENS_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// The serve flags, for a bare `trainlens`: it is `trainlens serve`, with
    /// the same flags and environment (one definition, no defaults repeated).
    #[command(flatten)]
    pub serve: ServeArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The public URL of commands that do not listen themselves.
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Import recordings (JSONL record format, optionally gzipped) as new runs.
    Import(ImportArgs),
    /// Write a run back out in the record format (NDJSON).
    Export(ExportArgs),
    /// Show the findings of a run, or the open findings of a project.
    Findings(FindingsArgs),
    /// Manage the webhooks that alerts are sent to (operator only).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

#[derive(Debug, Args)]
pub struct FindingsArgs {
    /// The run id; without it, the open findings of `--project` (or of all
    /// projects).
    pub run: Option<Uuid>,
    #[arg(long)]
    pub project: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Include resolved findings (with a run).
    #[arg(long)]
    pub all: bool,
    /// Exit with status 1 when an open finding is at least this severe
    /// (info, warning, error, critical): for CI pipelines that train models.
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<String>,
    /// Ask a running server instead of the database.
    #[arg(long, env = "TRAINLENS_SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook.
    Add {
        url: String,
        /// slack, discord or json.
        #[arg(long, default_value = "json")]
        format: String,
        /// Alert on findings at least this severe.
        #[arg(long, default_value = "warning")]
        min_severity: String,
        /// Sign JSON payloads with HMAC-SHA256 of this secret
        /// (`X-Trainlens-Signature: sha256=…`).
        #[arg(long, env = "TRAINLENS_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Only runs of this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// List webhooks (secrets are not shown).
    List,
    /// Remove a webhook and its undelivered alerts.
    Remove { id: i64 },
}

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
    let public_url = cli.public_url.as_deref();
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => serve(&cli.database_url, public_url, args).await,
        Command::Import(args) => import(&cli.database_url, args).await,
        Command::Export(args) => export(&cli.database_url, args).await,
        Command::Findings(args) => {
            let public_url = public_url.unwrap_or(DEFAULT_PUBLIC_URL);
            findings(&cli.database_url, public_url, args).await
        }
        Command::Webhook { command } => webhook(&cli.database_url, command).await,
    }
}

async fn serve(
    database_url: &str,
    public_url: Option<&str>,
    args: ServeArgs,
) -> anyhow::Result<()> {
    if !args.bind.ip().is_loopback() && !args.allow_unauthenticated {
        bail!(
            "refusing to listen on {} without authentication: anyone who can reach it could read and write \
             every run. Bind 127.0.0.1, or pass --allow-unauthenticated behind an authenticating proxy.",
            args.bind
        );
    }
    let store = Arc::new(Store::connect(database_url).await.with_context(|| {
        format!(
            "opening {}",
            crate::store::describe_database_url(database_url)
        )
    })?);
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    let public_url = public_url.map_or_else(|| format!("http://{addr}"), str::to_string);
    tracing::info!(%addr, backend = ?store.backend(), "trainlens listening on http://{addr}");
    let state = AppState::new(store.clone(), &public_url, args.max_body_bytes)
        .with_admin_token(args.admin_token.as_deref())
        .with_database_name(&crate::store::describe_database_url(database_url));
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
    let mut req = crate::http_client()
        .build()?
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
            let resp = crate::http_client()
                .build()?
                .get(&url)
                .send()
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

async fn findings(database_url: &str, public_url: &str, args: FindingsArgs) -> anyhow::Result<()> {
    let fail_on = args
        .fail_on
        .as_deref()
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| anyhow::anyhow!("--fail-on: {e}"))
        })
        .transpose()?;
    let (findings, notes): (Vec<serde_json::Value>, Vec<String>) = match &args.server {
        Some(server) => findings_remote(server, &args).await?,
        None => findings_local(database_url, public_url, &args).await?,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({ "findings": findings, "notes": notes });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        print_findings(&mut out, &findings, &notes)?;
    }
    if let Some(min) = fail_on {
        let bad = findings
            .iter()
            .filter(|f| f["status"] == "open")
            .filter(|f| {
                f["severity"]
                    .as_str()
                    .and_then(|s| s.parse::<Severity>().ok())
                    .is_some_and(|s| s >= min)
            })
            .count();
        if bad > 0 {
            bail!("{bad} open finding(s) at {} or worse", min.as_str());
        }
    }
    Ok(())
}

/// Reads findings from the database, diagnosing first whatever is stale.
async fn findings_local(
    database_url: &str,
    public_url: &str,
    args: &FindingsArgs,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<String>)> {
    let store = Arc::new(Store::connect(database_url).await.with_context(|| {
        format!(
            "opening {}",
            crate::store::describe_database_url(database_url)
        )
    })?);
    let runner = Runner::new(
        store.clone(),
        RunnerConfig::new(public_url),
        Default::default(),
    );
    let result = async {
        let mut notes = Vec::new();
        let found: Vec<StoredFinding> = match args.run {
            Some(run) => {
                store
                    .get_run(run)
                    .await?
                    .with_context(|| format!("no run {run}"))?;
                runner.diagnose(run).await?;
                notes = store
                    .diagnosis_state(run)
                    .await?
                    .map(|d| d.notes)
                    .unwrap_or_default();
                let status = (!args.all).then_some(FindingStatus::Open);
                store.findings(run, status).await?
            }
            None => {
                for run in store.due_runs(0.0, 0.0, 100_000).await? {
                    runner.diagnose(run).await?;
                }
                store
                    .open_findings(args.project.as_deref(), Severity::Info)
                    .await?
            }
        };
        let found = found
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        anyhow::Ok((found, notes))
    }
    .await;
    store.close().await;
    result
}

async fn findings_remote(
    server: &str,
    args: &FindingsArgs,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<String>)> {
    let base = server.trim_end_matches('/');
    let client = crate::http_client().build()?;
    let get = |url: String| {
        let client = client.clone();
        async move {
            let resp = client
                .get(&url)
                .send()
                .await
                .with_context(|| format!("fetching {url}"))?;
            let status = resp.status();
            let body: serde_json::Value =
                serde_json::from_str(&resp.text().await?).unwrap_or_default();
            if !status.is_success() {
                bail!(
                    "server answered {status}: {}",
                    body["error"]["message"].as_str().unwrap_or("")
                );
            }
            anyhow::Ok(body)
        }
    };
    let body = match args.run {
        Some(run) => {
            let status = if args.all { "all" } else { "open" };
            let url = format!("{base}/api/v1/runs/{run}/findings?status={status}");
            // The server diagnoses within seconds of new data; wait for it.
            let mut body = get(url.clone()).await?;
            for _ in 0..40 {
                if body["up_to_date"] == true {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                body = get(url.clone()).await?;
            }
            body
        }
        None => {
            let mut url = format!("{base}/api/v1/findings?min_severity=info");
            if let Some(p) = &args.project {
                url.push_str("&project=");
                url.extend(form_urlencoded::byte_serialize(p.as_bytes()));
            }
            get(url).await?
        }
    };
    let findings = body["findings"].as_array().cloned().unwrap_or_default();
    let notes = body["diagnosis"]["notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((findings, notes))
}

/// `s` safe to print on a terminal: control characters (escape sequences,
/// carriage returns, …) become visible escapes such as `\u{1b}`; other
/// characters, Unicode included, stay as they are.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

fn print_findings(
    out: &mut impl Write,
    findings: &[serde_json::Value],
    notes: &[String],
) -> std::io::Result<()> {
    if findings.is_empty() {
        writeln!(out, "no findings")?;
    }
    for f in findings {
        let s = |k: &str| printable(f[k].as_str().unwrap_or(""));
        let onset = f["onset_step"]
            .as_u64()
            .map_or_else(String::new, |s| format!(" from step {s}"));
        let resolved = if f["status"] == "resolved" {
            " (resolved)"
        } else {
            ""
        };
        writeln!(
            out,
            "{:<8}  {}{onset}{resolved}  [{}/{} {}]",
            s("severity").to_uppercase(),
            s("kind"),
            s("project"),
            s("run_name"),
            s("run_id"),
        )?;
        writeln!(out, "          {}", s("title"))?;
        if !s("cause").is_empty() {
            writeln!(out, "          cause: {}", s("cause"))?;
        }
        for fix in f["fixes"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "          fix:   {}",
                printable(fix.as_str().unwrap_or(""))
            )?;
        }
    }
    for n in notes {
        writeln!(out, "note: {}", printable(n))?;
    }
    Ok(())
}

async fn webhook(database_url: &str, command: WebhookCommand) -> anyhow::Result<()> {
    let store = Store::connect(database_url)
        .await
        .context("opening the database")?;
    let result = async {
        match command {
            WebhookCommand::Add {
                url,
                format,
                min_severity,
                secret,
                project,
            } => {
                let hook = crate::api::findings::new_webhook(
                    url,
                    Some(&format),
                    Some(&min_severity),
                    secret,
                    project,
                )?;
                let hook = store.add_webhook(&hook).await?;
                println!(
                    "webhook {} added: {} ({}, {} or worse{})",
                    hook.id,
                    printable(&hook.url),
                    hook.format.as_str(),
                    hook.min_severity.as_str(),
                    hook.project
                        .map(|p| format!(", project {}", printable(&p)))
                        .unwrap_or_default()
                );
            }
            WebhookCommand::List => {
                for h in store.webhooks().await? {
                    println!(
                        "{}\t{}\t{}\t{}+\t{}\t{}",
                        h.id,
                        printable(&h.url),
                        h.format.as_str(),
                        h.min_severity.as_str(),
                        printable(h.project.as_deref().unwrap_or("*")),
                        if h.signed { "signed" } else { "unsigned" }
                    );
                }
            }
            WebhookCommand::Remove { id } => {
                if !store.remove_webhook(id).await? {
                    bail!("no webhook {id}");
                }
                println!("webhook {id} removed");
            }
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("run\u{1b}[2Jx"), "run\\u{1b}[2Jx");
        assert_eq!(printable("a\rb\nc"), "a\\u{d}b\\u{a}c");
        assert_eq!(printable("größe ✓ 学习"), "größe ✓ 学习");
    }

    #[test]
    fn findings_print_no_raw_escape() {
        let f = serde_json::json!({
            "severity": "error", "kind": "divergence", "project": "p\u{1b}]0;pwned\u{7}",
            "run_name": "r\u{1b}[31m", "run_id": "x", "title": "t", "cause": "", "fixes": ["f\u{8}"],
        });
        let mut out = Vec::new();
        print_findings(&mut out, &[f], &[]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("p\\u{1b}]0;pwned\\u{7}"), "{text}");
    }
}
