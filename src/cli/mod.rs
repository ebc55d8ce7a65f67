//! Command line, one file per subcommand: `serve` (the default),
//! `import`, `import-tb`, `export`, `findings`, `sync`, `webhook`; `remote` is the one client for
//! the commands that talk to a running server (`--server`). Every flag can
//! also come from the environment variable named in `--help`, and the global
//! flags (`--database-url`, `--public-url`) apply to every command.

mod export;
mod findings;
mod import;
mod import_tb;
mod remote;
mod serve;
mod sync;
mod webhook;

use clap::{Parser, Subcommand};

pub use export::ExportArgs;
pub use findings::FindingsArgs;
pub use import::ImportArgs;
pub use import_tb::ImportTbArgs;
pub use serve::ServeArgs;
pub use sync::SyncArgs;
pub use webhook::WebhookCommand;

use anyhow::Context;

use crate::ingest::Limits;
use crate::store::{Store, StoreOptions};

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

    /// Change a size limit on what clients send, as NAME=VALUE (repeatable;
    /// in the environment, comma-separated). Names and defaults:
    /// max_config_bytes=1048576, max_tags=100, max_keys_per_run=100000,
    /// max_layers=10000, max_dataset_features=10000, max_histogram_bins=1000,
    /// max_image_png_bytes=4194304, max_tensor_values=1048576,
    /// max_prediction_samples=20000.
    #[arg(
        long = "limit",
        env = "TRAINLENS_LIMITS",
        value_name = "NAME=VALUE",
        value_delimiter = ',',
        global = true
    )]
    pub limits: Vec<String>,

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
    /// Import a TensorBoard log directory (one run per directory of event
    /// files); again imports only what is new, `--follow` keeps tailing it.
    ImportTb(ImportTbArgs),
    /// Write a run back out in the record format (NDJSON).
    Export(ExportArgs),
    /// Show the findings of a run, or the open findings of a project.
    Findings(FindingsArgs),
    /// Upload the Python client's spooled runs (offline or during an outage)
    /// to a server; syncing again duplicates nothing.
    Sync(SyncArgs),
    /// Manage the webhooks that alerts are sent to (operator only).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

/// What every command reads: the global flags.
pub struct Global {
    pub database_url: String,
    pub public_url: Option<String>,
    pub limits: Limits,
}

impl Global {
    /// Opens the database, naming it (without credentials) when that fails.
    async fn open_store(&self) -> anyhow::Result<Store> {
        let options = StoreOptions {
            max_keys_per_run: self.limits.max_keys_per_run,
            ..StoreOptions::default()
        };
        Store::connect_with(&self.database_url, &options)
            .await
            .with_context(|| {
                format!(
                    "opening {}",
                    crate::store::describe_database_url(&self.database_url)
                )
            })
    }
}

/// Parses `--limit NAME=VALUE` assignments over the defaults.
pub fn parse_limits(assignments: &[String]) -> anyhow::Result<Limits> {
    let mut limits = Limits::default();
    for a in assignments.iter().filter(|a| !a.trim().is_empty()) {
        limits.set(a).map_err(|e| anyhow::anyhow!("--limit: {e}"))?;
    }
    Ok(limits)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = Global {
        limits: parse_limits(&cli.limits)?,
        database_url: cli.database_url,
        public_url: cli.public_url,
    };
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => serve::serve(&global, args).await,
        Command::Import(args) => import::import(&global, args).await,
        Command::ImportTb(args) => import_tb::import_tb(&global, args).await,
        Command::Export(args) => export::export(&global, args).await,
        Command::Findings(args) => findings::findings(&global, args).await,
        Command::Sync(args) => sync::sync(args).await,
        Command::Webhook { command } => webhook::webhook(&global, command).await,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_by_name_and_bad_ones_are_refused() {
        let l = parse_limits(&["max_tags=5".into(), " max_keys_per_run = 7 ".into()]).unwrap();
        assert_eq!((l.max_tags, l.max_keys_per_run), (5, 7));
        assert_eq!(l.max_layers, Limits::default().max_layers);
        for bad in ["max_tags", "max_tags=0", "max_tags=-1", "nope=3"] {
            let e = parse_limits(&[bad.into()]).unwrap_err().to_string();
            assert!(e.starts_with("--limit: "), "{e}");
        }
        let e = parse_limits(&["nope=3".into()]).unwrap_err().to_string();
        assert!(
            e.contains("max_keys_per_run"),
            "the error lists the names: {e}"
        );
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("run\u{1b}[2Jx"), "run\\u{1b}[2Jx");
        assert_eq!(printable("a\rb\nc"), "a\\u{d}b\\u{a}c");
        assert_eq!(printable("größe ✓ 学习"), "größe ✓ 学习");
    }
}
