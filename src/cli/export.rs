//! `trainlens export RUN`: a run back out in the record format (or its
//! scalars as CSV, `--format csv`), streamed a page at a time from the
//! database or from a running server, so memory stays bounded whatever the
//! run's size; `trainlens export --project P`: the project's runs table as
//! CSV (config and last values).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use uuid::Uuid;

use super::remote::Remote;
use crate::{csv_export, record};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Ndjson,
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run id.
    #[arg(required_unless_present = "project", conflicts_with = "project")]
    pub run: Option<Uuid>,
    /// Export this project's runs table instead (CSV: one run per row, its
    /// config and the last value of every series).
    #[arg(long)]
    pub project: Option<String>,
    /// The run's form: the record format, or its scalars as CSV
    /// (key,step,time,value).
    #[arg(long, value_enum, default_value = "ndjson", conflicts_with = "project")]
    pub format: Format,
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
            let path = match (&args.run, &args.project) {
                (Some(run), _) if args.format == Format::Csv => {
                    format!("/api/v1/runs/{run}/export?format=csv")
                }
                (Some(run), _) => format!("/api/v1/runs/{run}/export"),
                (None, Some(project)) => format!(
                    "/api/v1/projects/{}/runs.csv",
                    form_urlencoded::byte_serialize(project.as_bytes()).collect::<String>()
                ),
                (None, None) => unreachable!("clap requires a run or --project"),
            };
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
                match (&args.run, &args.project) {
                    (Some(run), _) => {
                        let mut pages = store.export_pages(*run).await?;
                        if args.format == Format::Csv {
                            out.write_all(csv_export::SCALARS_HEADER.as_bytes())?;
                        }
                        while let Some(page) = pages.next_page().await? {
                            let text = match args.format {
                                Format::Ndjson => record::to_ndjson(&page),
                                Format::Csv => csv_export::scalar_rows(&page),
                            };
                            out.write_all(text.as_bytes())?;
                        }
                    }
                    (None, Some(project)) => {
                        let runs = store.runs_with_series(project).await?;
                        if runs.is_empty() {
                            anyhow::bail!("no runs in project {project:?}");
                        }
                        out.write_all(csv_export::runs_table(&runs).as_bytes())?;
                    }
                    (None, None) => unreachable!("clap requires a run or --project"),
                }
                anyhow::Ok(())
            }
            .await
            .with_context(|| match (&args.run, &args.project) {
                (Some(run), _) => format!("exporting run {run}"),
                (None, project) => format!(
                    "exporting the runs of project {:?}",
                    project.as_deref().unwrap_or_default()
                ),
            });
            store.close().await;
            written
        }
    }
}
