//! `trainlens sync PATH…`: uploads the Python client's spooled runs (files,
//! or directories of `*.jsonl` / `*.jsonl.gz`) to a running server — the
//! same as `python -m trainlens sync`.
//!
//! A spool is a recording whose `run` line has a `run_key`. It goes to
//! `POST /api/v1/import` in chunks of whole lines, each led by the `run`
//! line, so every chunk lands in the run with that key and a re-sent point
//! replaces itself: syncing twice, or again after an interrupted sync,
//! duplicates nothing. A complete upload leaves `<file>.synced` (the size
//! sent, the run's id and URL); a later sync skips the file unless it grew
//! or `--force` is given.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::import::read_recording;
use super::remote::Remote;

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Spool files or directories (e.g. ./trainlens-spool).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The server to upload to.
    #[arg(
        long,
        env = "TRAINLENS_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Upload files already synced again (harmless: nothing is duplicated).
    #[arg(long)]
    pub force: bool,
}

/// Largest chunk of lines sent in one request (the server takes 32 MiB).
const CHUNK_BYTES: usize = 4 << 20;
/// Suffix of the marker a complete upload leaves next to the file.
const MARKER: &str = ".synced";

pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.server)?;
    let files = spool_files(&args.paths)?;
    if files.is_empty() {
        bail!("no spool files (*.jsonl, *.jsonl.gz) found");
    }
    let mut failed = 0;
    for path in &files {
        let name = super::printable(&path.display().to_string());
        if !args.force && synced(path) {
            println!("{name}: already synced");
            continue;
        }
        match upload(&remote, path).await {
            Ok(line) => println!("{name}: {line}"),
            Err(e) => {
                failed += 1;
                eprintln!("{name}: {}", super::printable(&format!("{e:#}")));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} spool files failed to sync", files.len());
    }
    Ok(())
}

/// The files among `paths`, a directory standing for its spool files.
fn spool_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    let n = f.to_string_lossy();
                    n.ends_with(".jsonl") || n.ends_with(".jsonl.gz")
                })
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn marker(path: &Path) -> PathBuf {
    let mut m = path.as_os_str().to_owned();
    m.push(MARKER);
    PathBuf::from(m)
}

/// The file was uploaded whole and has not grown since.
fn synced(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(marker(path)) else {
        return false;
    };
    let size = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["size"].as_u64());
    size.is_some() && size == std::fs::metadata(path).ok().map(|m| m.len())
}

/// The spool's `run` line, checked: without a `run_key`, every upload would
/// make another run.
fn run_line(first: &[u8]) -> anyhow::Result<()> {
    let line: serde_json::Value = serde_json::from_slice(first).unwrap_or_default();
    let has_key = line["run_key"].as_str().is_some_and(|k| !k.is_empty());
    if line["type"] != "run" || !has_key {
        bail!(
            "not a spool: the first line must be a run line with a run_key \
             (without one every upload would make another run; use `trainlens import`)"
        );
    }
    Ok(())
}

/// Non-blank lines (with their newline) in chunks of at most `limit` bytes
/// (a longer line is a chunk of its own).
fn chunks(lines: &[&[u8]], limit: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk: Vec<u8> = Vec::new();
    for line in lines {
        if !chunk.is_empty() && chunk.len() + line.len() + 1 > limit {
            out.push(std::mem::take(&mut chunk));
        }
        chunk.extend_from_slice(line);
        chunk.push(b'\n');
    }
    if !chunk.is_empty() || out.is_empty() {
        out.push(chunk);
    }
    out
}

async fn upload(remote: &Remote, path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let body = read_recording(path)?;
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .collect();
    let Some((first, rest)) = lines.split_first() else {
        bail!("empty");
    };
    run_line(first)?;
    let mut answer = serde_json::Value::Null;
    for chunk in chunks(rest, CHUNK_BYTES) {
        let mut req_body = Vec::with_capacity(first.len() + 1 + chunk.len());
        req_body.extend_from_slice(first);
        req_body.push(b'\n');
        req_body.extend_from_slice(&chunk);
        let req = remote
            .post("/api/v1/import")
            .header("content-type", "application/x-ndjson")
            .body(req_body);
        answer = remote.json(req).await?;
    }
    let id = answer["id"].as_str().unwrap_or("?").to_string();
    let url = answer["url"].as_str().unwrap_or("?").to_string();
    let done = serde_json::json!({ "size": size, "id": id, "url": url });
    std::fs::write(marker(path), done.to_string())
        .with_context(|| format!("writing {}", marker(path).display()))?;
    Ok(format!("run {id} at {url} ({} lines)", lines.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_whole_lines_within_the_limit() {
        let lines: Vec<&[u8]> = vec![b"aaaa", b"bb", b"cccccccc", b"d"];
        let c = chunks(&lines, 8);
        assert_eq!(
            c,
            vec![
                b"aaaa\nbb\n".to_vec(),
                b"cccccccc\n".to_vec(),
                b"d\n".to_vec()
            ]
        );
        assert_eq!(
            chunks(&[], 8),
            vec![Vec::<u8>::new()],
            "a run line alone is sent"
        );
    }

    #[test]
    fn only_a_run_line_with_a_key_makes_a_spool() {
        assert!(run_line(br#"{"type":"run","name":"a","run_key":"k"}"#).is_ok());
        for bad in [
            &br#"{"type":"run","name":"a"}"#[..],
            br#"{"type":"run","name":"a","run_key":""}"#,
            br#"{"type":"scalar","key":"a","step":0,"value":1,"run_key":"k"}"#,
            b"not json",
        ] {
            let e = run_line(bad).unwrap_err().to_string();
            assert!(e.contains("run_key"), "{e}");
        }
    }
}
