//! `trainlens export RUN`: a run back out in the record format, streamed a
//! page at a time from the database or from a running server, so memory
//! stays bounded whatever the run's size.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use uuid::Uuid;

use super::remote::Remote;
use crate::record;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run id.
    pub run: Uuid,
    /// Read from a running server instead of the database.
    #[arg(long, env = "TRAINLENS_SERVER")]
    pub server: Option<String>,
    /// Write here instead of standard output (through a `.partial` file
    /// renamed when the export is complete, so a failed export leaves no
    /// complete-looking file).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub async fn export(global: &super::Global, args: ExportArgs) -> anyhow::Result<()> {
    match &args.output {
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            write_export(global, &args, &mut out).await?;
            out.flush()?;
            Ok(())
        }
        Some(path) => {
            let partial = partial_path(path);
            let file = std::fs::File::create(&partial)
                .with_context(|| format!("creating {}", partial.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let written = async {
                write_export(global, &args, &mut out).await?;
                out.flush()?;
                out.get_ref().sync_all()?;
                anyhow::Ok(())
            }
            .await;
            drop(out);
            match written {
                Ok(()) => std::fs::rename(&partial, path)
                    .with_context(|| format!("writing {}", path.display())),
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    Err(e)
                }
            }
        }
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

async fn write_export(
    global: &super::Global,
    args: &ExportArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match &args.server {
        Some(server) => {
            let remote = Remote::new(server)?;
            let path = format!("/api/v1/runs/{}/export", args.run);
            let mut resp = remote.send(remote.get(&path)).await?;
            // A server that fails mid-export cuts the body off: that is an
            // error here, never a short file.
            while let Some(chunk) = resp
                .chunk()
                .await
                .with_context(|| format!("reading {}", remote.url(&path)))?
            {
                out.write_all(&chunk)?;
            }
            Ok(())
        }
        None => {
            let store = global.open_store().await?;
            let written = async {
                let mut pages = store.export_pages(args.run).await?;
                while let Some(page) = pages.next_page().await? {
                    out.write_all(record::to_ndjson(&page).as_bytes())?;
                }
                anyhow::Ok(())
            }
            .await
            .with_context(|| format!("exporting run {}", args.run));
            store.close().await;
            written
        }
    }
}
