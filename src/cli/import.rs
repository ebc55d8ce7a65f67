//! `trainlens import FILE…`: recordings (JSONL, optionally gzipped) become
//! runs, in the database directly or through a running server.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::remote::Remote;
use crate::ingest::{self, Limits, RunLine};
use crate::model::NewRun;
use crate::store::Store;

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

/// Where the files go.
enum Target {
    Local(Store),
    Remote(Remote),
}

pub async fn import(global: &super::Global, args: ImportArgs) -> anyhow::Result<()> {
    let target = match &args.server {
        Some(server) => Target::Remote(Remote::new(server)?),
        None => Target::Local(global.open_store().await?),
    };
    let mut failed = 0;
    for path in &args.files {
        let result = match &target {
            Target::Local(store) => import_local(store, &global.limits, path).await,
            Target::Remote(remote) => import_remote(remote, path).await,
        };
        match result {
            Ok(line) => println!("{}: {line}", super::printable(&path.display().to_string())),
            Err(e) => {
                failed += 1;
                eprintln!(
                    "{}: {}",
                    super::printable(&path.display().to_string()),
                    super::printable(&format!("{e:#}"))
                );
            }
        }
    }
    if let Target::Local(store) = target {
        store.close().await;
    }
    if failed > 0 {
        bail!("{failed} of {} files failed to import", args.files.len());
    }
    Ok(())
}

/// Reads a file, gunzipping it (every member) when it starts with the gzip
/// magic bytes.
pub(super) fn read_recording(path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !is_gzip(&raw) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .with_context(|| format!("gunzipping {}", path.display()))?;
    Ok(out)
}

fn is_gzip(raw: &[u8]) -> bool {
    raw.starts_with(&[0x1f, 0x8b])
}

async fn import_local(store: &Store, limits: &Limits, path: &Path) -> anyhow::Result<String> {
    let body = read_recording(path)?;
    let rec = ingest::parse_ndjson_within(&body, RunLine::Required, limits)?;
    let run = rec.run.expect("a recording has a run line");
    let n = rec.batch.record_count();
    let run = store.import(&NewRun::from(run), &rec.batch).await?;
    Ok(format!("run {} ({} records)", run.id, n + 1))
}

/// Sends the file as it is (gzipped files with `Content-Encoding: gzip`).
async fn import_remote(remote: &Remote, path: &Path) -> anyhow::Result<String> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut req = remote
        .post("/api/v1/import")
        .header("content-type", "application/x-ndjson");
    if is_gzip(&raw) {
        req = req.header("content-encoding", "gzip");
    }
    let body = remote.json(req.body(raw)).await?;
    Ok(format!(
        "run {} at {}",
        body["id"].as_str().unwrap_or("?"),
        body["url"].as_str().unwrap_or("?")
    ))
}
