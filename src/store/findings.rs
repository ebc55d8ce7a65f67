//! Diagnosis leases, the run view the detectors read, and findings.
//!
//! Work is shared between replicas through leases in the database: a
//! replica owns a run's diagnosis only after an `UPDATE … WHERE lease_until <
//! now` that changed one row, which PostgreSQL and SQLite both make atomic. A
//! crashed owner's lease simply expires.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::{AnyConnection, FromRow};
use uuid::Uuid;

use super::records::StepKind;
use super::{Result, Store, StoreError, from_json, now, parse_uuid, parse_word, to_json};
use crate::alerts::{Outgoing, Prior, Transitions};
use crate::diagnostics::{Finding, Hist, Kind, RunView, Series};
use crate::model::{Config, FindingStatus, Run, RunStatus, Severity};
use crate::record::Record;

macro_rules! select_findings {
    ($tail:literal) => {
        concat!(
            "SELECT f.run_id, r.name AS run_name, p.name AS project, f.status, f.kind, f.severity, f.onset_step, \
             f.title, f.evidence, f.cause, f.caused_by, f.fixes, f.first_seen_at, f.updated_at, f.resolved_at \
             FROM findings f JOIN runs r ON r.id = f.run_id JOIN projects p ON p.id = r.project_id ",
            $tail
        )
    };
}

/// A finding as stored, with its run and status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFinding {
    pub run_id: Uuid,
    pub run_name: String,
    pub project: String,
    pub status: FindingStatus,
    #[serde(flatten)]
    pub finding: Finding,
    pub first_seen_at: f64,
    pub updated_at: f64,
    pub resolved_at: Option<f64>,
}

#[derive(FromRow)]
struct FindingRow {
    run_id: String,
    run_name: String,
    project: String,
    status: String,
    kind: String,
    severity: String,
    onset_step: Option<i64>,
    title: String,
    evidence: String,
    cause: String,
    caused_by: Option<String>,
    fixes: String,
    first_seen_at: f64,
    updated_at: f64,
    resolved_at: f64,
}

try_from_row!(FindingRow => StoredFinding, |r| {
    Ok(StoredFinding {
        run_id: parse_uuid(&r.run_id)?,
        run_name: r.run_name,
        project: r.project,
        status: parse_word(&r.status)?,
        finding: Finding {
            kind: parse_word(&r.kind)?,
            severity: parse_word(&r.severity)?,
            onset_step: r.onset_step.map(|s| s as u64),
            title: r.title,
            evidence: from_json("finding evidence", &r.evidence)?,
            cause: r.cause,
            caused_by: r.caused_by.as_deref().map(parse_word).transpose()?,
            fixes: from_json("finding fixes", &r.fixes)?,
        },
        first_seen_at: r.first_seen_at,
        updated_at: r.updated_at,
        resolved_at: (r.resolved_at > 0.0).then_some(r.resolved_at),
    })
});

/// The last diagnosis of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiagnosisState {
    /// The run's data version the diagnosis saw.
    pub diagnosed_version: i64,
    pub diagnosed_at: f64,
    /// What could not be judged yet.
    pub notes: Vec<String>,
}

#[derive(FromRow)]
struct DiagnosisRow {
    diagnosed_version: i64,
    diagnosed_at: f64,
    notes: String,
}

#[derive(FromRow)]
struct PriorRow {
    kind: String,
    status: String,
    severity: String,
    alert_epoch: i64,
}

/// A diagnosis to save, as the alert policy decided it.
#[derive(Debug, Clone, Copy)]
pub struct DiagnosisToSave<'a> {
    pub run: Uuid,
    /// The run's data version the diagnosis saw.
    pub version: i64,
    /// The lease owner; saving fails when it no longer holds the lease.
    pub owner: &'a str,
    pub notes: &'a [String],
    pub changes: &'a Transitions<'a>,
    pub alerts: &'a [Outgoing],
}

/// A run whose diagnosis is behind its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueRun {
    pub run: Uuid,
    /// No data came for the `quiet` time asked for: the run paused or ended.
    pub quiet: bool,
}

/// What saving a diagnosis changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// Findings that went into warning-or-worse.
    pub raised: Vec<Kind>,
    pub resolved: Vec<Kind>,
    /// Outbox rows added.
    pub alerts: usize,
}

impl Store {
    /// Runs with data newer than their diagnosis whose writes have been quiet
    /// for `quiet` seconds, or whose diagnosis is `max_wait` seconds old, and
    /// which nobody holds a lease on; each says whether it is quiet.
    pub async fn due_runs(&self, quiet: f64, max_wait: f64, limit: i64) -> Result<Vec<DueRun>> {
        let now = now();
        let rows: Vec<(String, f64)> = sqlx::query_as(
            "SELECT r.id, r.updated_at FROM runs r LEFT JOIN diagnosis_state d ON d.run_id = r.id \
             WHERE r.data_version > COALESCE(d.diagnosed_version, 0) \
               AND COALESCE(d.lease_until, 0) < $1 \
               AND (r.updated_at <= $2 OR COALESCE(d.diagnosed_at, 0) <= $3) \
             ORDER BY r.updated_at LIMIT $4",
        )
        .bind(now)
        .bind(now - quiet)
        .bind(now - max_wait)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|(id, updated_at)| {
                Ok(DueRun {
                    run: parse_uuid(id)?,
                    quiet: *updated_at <= now - quiet,
                })
            })
            .collect()
    }

    /// Takes the lease on diagnosing `run` for `lease` seconds; false when
    /// another owner holds it.
    pub async fn claim_run(&self, run: Uuid, owner: &str, lease: f64) -> Result<bool> {
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            sqlx::query(
                "INSERT INTO diagnosis_state (run_id) VALUES ($1) ON CONFLICT (run_id) DO NOTHING",
            )
            .bind(run.to_string())
            .execute(&mut *conn)
            .await?;
            let now = now();
            let done = sqlx::query(
                "UPDATE diagnosis_state SET lease_owner = $2, lease_until = $3 WHERE run_id = $1 AND lease_until < $4",
            )
            .bind(run.to_string())
            .bind(owner)
            .bind(now + lease)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Gives the lease back without saving a diagnosis.
    pub async fn release_run(&self, run: Uuid, owner: &str) -> Result<()> {
        self.write_one(
            sqlx::query(
                "UPDATE diagnosis_state SET lease_until = 0 WHERE run_id = $1 AND lease_owner = $2",
            )
            .bind(run.to_string())
            .bind(owner),
        )
        .await?;
        Ok(())
    }

    /// Everything the detectors need about a run, with the run as read
    /// before its data (so the data is at least that version).
    pub async fn run_view(&self, run: Uuid) -> Result<Option<(Run, RunView)>> {
        let Some(meta) = self.get_run(run).await? else {
            return Ok(None);
        };
        let mut scalars = BTreeMap::new();
        for s in self.series(run).await? {
            let points = self
                .points(run, &s.key, None, None)
                .await?
                .unwrap_or_default();
            let series = Series {
                steps: points.iter().map(|p| p.step).collect(),
                values: points.iter().map(|p| p.value).collect(),
            };
            scalars.insert(s.key, series);
        }
        let mut histograms: BTreeMap<String, Vec<Hist>> = BTreeMap::new();
        for h in self.histograms(run, None).await? {
            histograms.entry(h.key).or_default().push(Hist {
                step: h.step,
                edges: h.edges,
                counts: h.counts,
                nonfinite: h.nonfinite,
            });
        }
        // The latest predictions of each split: an index-only key query,
        // then one record per split.
        let mut predictions = Vec::new();
        for k in self.step_record_keys(run, StepKind::Predictions).await? {
            let last = Some(k.last_step);
            let recs = self
                .step_records(run, StepKind::Predictions, &k.key, last, last, 1)
                .await?;
            predictions.extend(recs.into_iter().filter_map(|r| match r {
                Record::Predictions(p) => Some(p),
                _ => None,
            }));
        }
        let view = RunView {
            name: meta.name.clone(),
            config: meta.config.as_ref().map(Config::parse).unwrap_or_default(),
            status: (meta.status != RunStatus::Running).then(|| meta.status.as_str().to_string()),
            model: self.model(run).await?,
            datasets: self.datasets(run).await?,
            scalars,
            histograms,
            predictions,
        };
        Ok(Some((meta, view)))
    }

    /// The run's findings as stored, by kind: what the alert policy compares
    /// a new diagnosis with.
    pub async fn finding_priors(&self, run: Uuid) -> Result<HashMap<Kind, Prior>> {
        const SQL: &str =
            "SELECT kind, status, severity, alert_epoch FROM findings WHERE run_id = $1";
        let rows: Vec<PriorRow> = self.run_rows(SQL, run).await?;
        rows.into_iter()
            .map(|r| {
                let prior = Prior {
                    status: parse_word(&r.status)?,
                    severity: parse_word(&r.severity)?,
                    alert_epoch: r.alert_epoch,
                };
                Ok((parse_word(&r.kind)?, prior))
            })
            .collect()
    }

    /// Stores a diagnosis of `run` at data version `version`, as decided by
    /// the alert policy: opens and updates `changes.current`, resolves
    /// `changes.resolved`, queues `alerts` (once each: a repeat of a (webhook,
    /// run, kind, epoch) is ignored), records the notes and releases the
    /// lease. Fails with nothing written when `owner` no longer holds it.
    pub async fn save_diagnosis(&self, d: &DiagnosisToSave<'_>) -> Result<Saved> {
        in_write!(self, |tx| save_in(tx, d).await)
    }

    pub async fn diagnosis_state(&self, run: Uuid) -> Result<Option<DiagnosisState>> {
        const SQL: &str = "SELECT diagnosed_version, diagnosed_at, notes FROM diagnosis_state WHERE run_id = $1 AND diagnosed_version > 0";
        let row: Option<DiagnosisRow> = self.run_row(SQL, run).await?;
        row.map(|r| {
            Ok(DiagnosisState {
                diagnosed_version: r.diagnosed_version,
                diagnosed_at: r.diagnosed_at,
                notes: from_json("diagnosis notes", &r.notes)?,
            })
        })
        .transpose()
    }

    /// Findings of one run (of one status when given), worst first.
    pub async fn findings(
        &self,
        run: Uuid,
        status: Option<FindingStatus>,
    ) -> Result<Vec<StoredFinding>> {
        let rows: Vec<FindingRow> = sqlx::query_as(select_findings!(
            "WHERE f.run_id = $1 AND (CAST($2 AS TEXT) IS NULL OR f.status = $2) \
             ORDER BY f.status, f.severity_rank DESC, f.kind"
        ))
        .bind(run.to_string())
        .bind(status.map(|s| s.as_str().to_string()))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(StoredFinding::try_from).collect()
    }

    /// Open findings at least `min` severe, across one project or all, worst
    /// and newest first.
    pub async fn open_findings(
        &self,
        project: Option<&str>,
        min: Severity,
    ) -> Result<Vec<StoredFinding>> {
        let rows: Vec<FindingRow> = sqlx::query_as(select_findings!(
            "WHERE f.status = 'open' AND f.severity_rank >= $1 AND (CAST($2 AS TEXT) IS NULL OR p.name = $2) \
             ORDER BY f.severity_rank DESC, f.updated_at DESC, f.kind LIMIT 1000"
        ))
        .bind(min.rank())
        .bind(project.map(str::to_string))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(StoredFinding::try_from).collect()
    }
}

async fn save_in(conn: &mut AnyConnection, d: &DiagnosisToSave<'_>) -> Result<Saved> {
    let DiagnosisToSave {
        run,
        version,
        owner,
        notes,
        changes,
        alerts,
    } = *d;
    let run_id = run.to_string();
    let now = now();
    let done = sqlx::query(
        "UPDATE diagnosis_state SET diagnosed_version = $2, diagnosed_at = $3, notes = $4, lease_until = 0 \
         WHERE run_id = $1 AND lease_owner = $5 AND lease_until >= $3",
    )
    .bind(&run_id)
    .bind(version)
    .bind(now)
    .bind(to_json(notes))
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::LeaseLost);
    }
    for c in &changes.current {
        let f = c.finding;
        sqlx::query(
            "INSERT INTO findings (run_id, kind, status, severity, severity_rank, onset_step, title, evidence, \
             cause, fixes, first_seen_at, updated_at, alert_epoch, caused_by) \
             VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) \
             ON CONFLICT (run_id, kind) DO UPDATE SET status = 'open', severity = excluded.severity, \
             severity_rank = excluded.severity_rank, onset_step = excluded.onset_step, title = excluded.title, \
             evidence = excluded.evidence, cause = excluded.cause, fixes = excluded.fixes, \
             caused_by = excluded.caused_by, \
             updated_at = excluded.updated_at, resolved_at = 0, alert_epoch = excluded.alert_epoch",
        )
        .bind(&run_id)
        .bind(f.kind.as_str())
        .bind(f.severity.as_str())
        .bind(f.severity.rank())
        .bind(f.onset_step.map(|s| s as i64))
        .bind(&f.title)
        .bind(to_json(&f.evidence))
        .bind(&f.cause)
        .bind(to_json(&f.fixes))
        .bind(now)
        .bind(c.epoch)
        .bind(f.caused_by.map(|k| k.as_str()))
        .execute(&mut *conn)
        .await?;
    }
    let mut saved = Saved {
        raised: changes.raised(),
        ..Saved::default()
    };
    for a in alerts {
        let added = sqlx::query(
            "INSERT INTO alert_outbox (delivery_id, webhook_id, run_id, kind, epoch, body, next_attempt_at, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (webhook_id, run_id, kind, epoch) DO NOTHING",
        )
        .bind(&a.delivery_id)
        .bind(a.webhook_id)
        .bind(&run_id)
        .bind(a.kind.as_str())
        .bind(a.epoch)
        .bind(&a.body)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        saved.alerts += added.rows_affected() as usize;
    }
    for kind in &changes.resolved {
        let done = sqlx::query(
            "UPDATE findings SET status = 'resolved', resolved_at = $3, updated_at = $3 \
             WHERE run_id = $1 AND kind = $2 AND status = 'open'",
        )
        .bind(&run_id)
        .bind(kind.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            saved.resolved.push(*kind);
        }
    }
    // The runs table's live stream finds runs by this (see `live.rs`); last,
    // so that on PostgreSQL the run row is locked only until commit.
    sqlx::query("UPDATE runs SET changed_at = $2 WHERE id = $1")
        .bind(&run_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(saved)
}
