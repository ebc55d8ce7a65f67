//! Command line, one file per subcommand: `serve` (the default),
//! `import`, `export`, `findings`, `webhook`; `remote` is the one client for
//! the commands that talk to a running server (`--server`). Every flag can
//! also come from the environment variable named in `--help`, and the global
//! flags (`--database-url`, `--public-url`) apply to every command.

mod export;
mod findings;
mod import;
mod remote;
mod serve;
mod webhook;

use clap::{Parser, Subcommand};

pub use export::ExportArgs;
pub use findings::FindingsArgs;
pub use import::ImportArgs;
pub use serve::ServeArgs;
pub use webhook::WebhookCommand;

use crate::store::Store;

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

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let database_url = cli.database_url.as_str();
    let public_url = cli.public_url.as_deref();
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => serve::serve(database_url, public_url, args).await,
        Command::Import(args) => import::import(database_url, args).await,
        Command::Export(args) => export::export(database_url, args).await,
        Command::Findings(args) => {
            let public_url = public_url.unwrap_or(DEFAULT_PUBLIC_URL);
            findings::findings(database_url, public_url, args).await
        }
        Command::Webhook { command } => webhook::webhook(database_url, command).await,
    }
}

/// Opens the database, naming it (without credentials) when that fails.
async fn open_store(database_url: &str) -> anyhow::Result<Store> {
    use anyhow::Context;
    Store::connect(database_url).await.with_context(|| {
        format!(
            "opening {}",
            crate::store::describe_database_url(database_url)
        )
    })
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
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("run\u{1b}[2Jx"), "run\\u{1b}[2Jx");
        assert_eq!(printable("a\rb\nc"), "a\\u{d}b\\u{a}c");
        assert_eq!(printable("größe ✓ 学习"), "größe ✓ 学习");
    }
}
