//! `trainlens findings [RUN]`: a run's findings or a project's open ones,
//! as text or JSON, with `--fail-on` for CI pipelines that train models.
//! Locally, whatever is stale is diagnosed first (with the global public URL
//! in the alerts it queues); with `--server`, the server's answer is awaited
//! until its diagnosis is up to date.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use uuid::Uuid;

use super::printable;
use super::remote::Remote;
use crate::model::{FindingStatus, Severity};
use crate::runner::{Runner, RunnerConfig};
use crate::store::findings::StoredFinding;

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

/// Findings as the API serialises them, and the diagnosis notes.
type Found = (Vec<serde_json::Value>, Vec<String>);

pub async fn findings(global: &super::Global, args: FindingsArgs) -> anyhow::Result<()> {
    let fail_on = args
        .fail_on
        .as_deref()
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| anyhow::anyhow!("--fail-on: {e}"))
        })
        .transpose()?;
    let (findings, notes) = match &args.server {
        Some(server) => findings_remote(&Remote::new(server)?, &args).await?,
        None => findings_local(global, &args).await?,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({ "findings": findings, "notes": notes });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        print_findings(&mut out, &findings, &notes)?;
    }
    if let Some(min) = fail_on {
        let bad = count_at_least(&findings, min);
        if bad > 0 {
            bail!("{bad} open finding(s) at {} or worse", min.as_str());
        }
    }
    Ok(())
}

/// Open findings at `min` or worse.
fn count_at_least(findings: &[serde_json::Value], min: Severity) -> usize {
    findings
        .iter()
        .filter(|f| f["status"] == FindingStatus::Open.as_str())
        .filter(|f| {
            f["severity"]
                .as_str()
                .and_then(|s| s.parse::<Severity>().ok())
                .is_some_and(|s| s >= min)
        })
        .count()
}

/// Reads findings from the database, diagnosing first whatever is stale.
async fn findings_local(global: &super::Global, args: &FindingsArgs) -> anyhow::Result<Found> {
    let store = Arc::new(global.open_store().await?);
    let public_url = global
        .public_url
        .as_deref()
        .unwrap_or(super::DEFAULT_PUBLIC_URL);
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
                for due in store.due_runs(0.0, 0.0, 100_000).await? {
                    runner.diagnose(due.run).await?;
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

/// How often, and how many times, to ask a server whose diagnosis of the run
/// is not up to date yet (it diagnoses within seconds of new data).
const UP_TO_DATE_POLL: std::time::Duration = std::time::Duration::from_millis(250);
const UP_TO_DATE_POLLS: usize = 40;

async fn findings_remote(remote: &Remote, args: &FindingsArgs) -> anyhow::Result<Found> {
    let body = match args.run {
        Some(run) => {
            let status = if args.all { "all" } else { "open" };
            let path = format!("/api/v1/runs/{run}/findings?status={status}");
            let mut body = remote.json(remote.get(&path)).await?;
            for _ in 0..UP_TO_DATE_POLLS {
                if body["up_to_date"] == true {
                    break;
                }
                tokio::time::sleep(UP_TO_DATE_POLL).await;
                body = remote.json(remote.get(&path)).await?;
            }
            body
        }
        None => {
            let mut path = "/api/v1/findings?min_severity=info".to_string();
            if let Some(p) = &args.project {
                path.push_str("&project=");
                path.extend(form_urlencoded::byte_serialize(p.as_bytes()));
            }
            remote.json(remote.get(&path)).await?
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
        let resolved = if f["status"] == FindingStatus::Resolved.as_str() {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn fail_on_counts_open_findings_at_or_above_the_severity() {
        let f = |severity: &str, status: &str| serde_json::json!({ "severity": severity, "status": status });
        let found = [
            f("info", "open"),
            f("warning", "open"),
            f("error", "resolved"),
            f("critical", "open"),
        ];
        assert_eq!(count_at_least(&found, Severity::Info), 3);
        assert_eq!(count_at_least(&found, Severity::Warning), 2);
        assert_eq!(count_at_least(&found, Severity::Error), 1);
        assert_eq!(count_at_least(&found[..3], Severity::Error), 0);
    }
}
