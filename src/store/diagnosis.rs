//! Diagnosis state, findings, webhooks and the alert outbox.
//!
//! Work is shared between replicas through leases in the database: a
//! replica owns a run's diagnosis (or an outbox row's delivery) only after an
//! `UPDATE … WHERE lease_until < now` that changed one row, which PostgreSQL
//! and SQLite both make atomic. A crashed owner's lease simply expires.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Result, Run, RunStatus, Store, StoreError, json_column, now};
use crate::alerts::{self, Alert, Format};
use crate::diagnostics::{Diagnosis, Evidence, Finding, Hist, Kind, RunView, Series, Severity};

macro_rules! select_findings {
    ($tail:literal) => {
        concat!(
            "SELECT f.run_id, r.name, p.name, f.status, f.kind, f.severity, f.onset_step, f.title, f.evidence, \
             f.cause, f.fixes, f.first_seen_at, f.updated_at, f.resolved_at \
             FROM findings f JOIN runs r ON r.id = f.run_id JOIN projects p ON p.id = r.project_id ",
            $tail
        )
    };
}

pub fn severity_rank(s: Severity) -> i64 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Error => 2,
        Severity::Critical => 3,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    Open,
    Resolved,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Open => "open",
            FindingStatus::Resolved => "resolved",
        }
    }
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

/// The last diagnosis of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiagnosisState {
    /// The run's data version the diagnosis saw.
    pub diagnosed_version: i64,
    pub diagnosed_at: f64,
    /// What could not be judged yet.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub format: Format,
    pub min_severity: Severity,
    pub project: Option<String>,
    /// Whether payloads are signed; the secret itself is never shown.
    pub signed: bool,
    pub created_at: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    pub url: String,
    pub format: Format,
    pub min_severity: Severity,
    pub secret: Option<String>,
    pub project: Option<String>,
}

/// An outbox row claimed for delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub delivery_id: String,
    pub url: String,
    pub secret: Option<String>,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// An outbox row as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryInfo {
    pub delivery_id: String,
    pub webhook_id: i64,
    pub run_id: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
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
    /// which nobody holds a lease on.
    pub async fn due_runs(&self, quiet: f64, max_wait: f64, limit: i64) -> Result<Vec<Uuid>> {
        let now = now();
        let rows = sqlx::query(
            "SELECT r.id FROM runs r LEFT JOIN diagnosis_state d ON d.run_id = r.id \
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
            .map(|r| parse_uuid(&r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Takes the lease on diagnosing `run` for `lease` seconds; false when
    /// another owner holds it.
    pub async fn claim_run(&self, run: Uuid, owner: &str, lease: f64) -> Result<bool> {
        let _guard = self.write_guard().await;
        sqlx::query(
            "INSERT INTO diagnosis_state (run_id) VALUES ($1) ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(run.to_string())
        .execute(self.pool())
        .await?;
        let now = now();
        let done = sqlx::query(
            "UPDATE diagnosis_state SET lease_owner = $2, lease_until = $3 WHERE run_id = $1 AND lease_until < $4",
        )
        .bind(run.to_string())
        .bind(owner)
        .bind(now + lease)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease back without saving a diagnosis.
    pub async fn release_run(&self, run: Uuid, owner: &str) -> Result<()> {
        let _guard = self.write_guard().await;
        sqlx::query(
            "UPDATE diagnosis_state SET lease_until = 0 WHERE run_id = $1 AND lease_owner = $2",
        )
        .bind(run.to_string())
        .bind(owner)
        .execute(self.pool())
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
        let view = RunView {
            name: meta.name.clone(),
            config: meta.config.clone(),
            status: (meta.status != RunStatus::Running).then(|| meta.status.as_str().to_string()),
            model: self.model(run).await?,
            datasets: self.datasets(run).await?,
            scalars,
            histograms,
        };
        Ok(Some((meta, view)))
    }

    /// Stores a diagnosis of `run` at data version `version`: opens and
    /// updates findings, resolves the ones that no longer hold, queues one
    /// alert per matching webhook for each finding that went into
    /// warning-or-worse, and releases the lease. Fails with nothing written
    /// when `owner` no longer holds the lease.
    pub async fn save_diagnosis(
        &self,
        run: &Run,
        version: i64,
        owner: &str,
        diagnosis: &Diagnosis,
        public_url: &str,
    ) -> Result<Saved> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool().begin().await?;
        let run_id = run.id.to_string();
        let now = now();
        let done = sqlx::query(
            "UPDATE diagnosis_state SET diagnosed_version = $2, diagnosed_at = $3, notes = $4, lease_until = 0 \
             WHERE run_id = $1 AND lease_owner = $5 AND lease_until >= $3",
        )
        .bind(&run_id)
        .bind(version)
        .bind(now)
        .bind(serde_json::to_string(&diagnosis.notes).expect("notes serialise"))
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::LeaseLost);
        }

        let rows = sqlx::query(
            "SELECT kind, status, severity_rank, alert_epoch FROM findings WHERE run_id = $1",
        )
        .bind(&run_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut before: HashMap<String, (bool, i64)> = HashMap::new();
        for r in &rows {
            let status: String = r.try_get(1)?;
            let rank: i64 = r.try_get(2)?;
            before.insert(
                r.try_get(0)?,
                (status == "open" && rank >= 1, r.try_get(3)?),
            );
        }
        let hooks = webhooks_for(&mut tx, &run.project).await?;
        let run_url = format!("{}/runs/{}", public_url.trim_end_matches('/'), run.id);

        let mut saved = Saved::default();
        for f in &diagnosis.findings {
            let kind = f.kind.as_str();
            let rank = severity_rank(f.severity);
            let (was_raised, epoch) = before.get(kind).copied().unwrap_or((false, 0));
            let transition = rank >= 1 && !was_raised;
            let epoch = epoch + i64::from(transition);
            sqlx::query(
                "INSERT INTO findings (run_id, kind, status, severity, severity_rank, onset_step, title, evidence, \
                 cause, fixes, first_seen_at, updated_at, alert_epoch) \
                 VALUES ($1, $2, 'open', $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) \
                 ON CONFLICT (run_id, kind) DO UPDATE SET status = 'open', severity = excluded.severity, \
                 severity_rank = excluded.severity_rank, onset_step = excluded.onset_step, title = excluded.title, \
                 evidence = excluded.evidence, cause = excluded.cause, fixes = excluded.fixes, \
                 updated_at = excluded.updated_at, resolved_at = 0, alert_epoch = excluded.alert_epoch",
            )
            .bind(&run_id)
            .bind(kind)
            .bind(f.severity.as_str())
            .bind(rank)
            .bind(f.onset_step.map(|s| s as i64))
            .bind(&f.title)
            .bind(serde_json::to_string(&f.evidence).expect("evidence serialises"))
            .bind(&f.cause)
            .bind(serde_json::to_string(&f.fixes).expect("fixes serialise"))
            .bind(now)
            .bind(epoch)
            .execute(&mut *tx)
            .await?;
            if !transition {
                continue;
            }
            saved.raised.push(f.kind);
            for (hook_id, format, min_rank) in &hooks {
                if rank < *min_rank {
                    continue;
                }
                let delivery_id = Uuid::new_v4().to_string();
                let body = alerts::payload(
                    *format,
                    &Alert {
                        delivery_id: &delivery_id,
                        run_id: &run_id,
                        run_name: &run.name,
                        project: &run.project,
                        run_url: &run_url,
                        finding: f,
                    },
                );
                let added = sqlx::query(
                    "INSERT INTO alert_outbox (delivery_id, webhook_id, run_id, kind, epoch, body, next_attempt_at, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                     ON CONFLICT (webhook_id, run_id, kind, epoch) DO NOTHING",
                )
                .bind(&delivery_id)
                .bind(hook_id)
                .bind(&run_id)
                .bind(kind)
                .bind(epoch)
                .bind(body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                saved.alerts += added.rows_affected() as usize;
            }
        }
        let current: Vec<&str> = diagnosis.findings.iter().map(|f| f.kind.as_str()).collect();
        for r in &rows {
            let kind: String = r.try_get(0)?;
            let status: String = r.try_get(1)?;
            if status == "open" && !current.contains(&kind.as_str()) {
                sqlx::query(
                    "UPDATE findings SET status = 'resolved', resolved_at = $3, updated_at = $3 \
                     WHERE run_id = $1 AND kind = $2",
                )
                .bind(&run_id)
                .bind(&kind)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                saved.resolved.extend(Kind::parse(&kind));
            }
        }
        tx.commit().await?;
        Ok(saved)
    }

    pub async fn diagnosis_state(&self, run: Uuid) -> Result<Option<DiagnosisState>> {
        let row = sqlx::query(
            "SELECT diagnosed_version, diagnosed_at, notes FROM diagnosis_state WHERE run_id = $1 AND diagnosed_version > 0",
        )
        .bind(run.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(DiagnosisState {
                diagnosed_version: r.try_get(0)?,
                diagnosed_at: r.try_get(1)?,
                notes: json_column(&r, 2)?,
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
        let rows = sqlx::query(select_findings!(
            "WHERE f.run_id = $1 AND (CAST($2 AS TEXT) IS NULL OR f.status = $2) \
             ORDER BY f.status, f.severity_rank DESC, f.kind"
        ))
        .bind(run.to_string())
        .bind(status.map(|s| s.as_str().to_string()))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(finding_from_row).collect()
    }

    /// Open findings at least `min` severe, across one project or all, worst
    /// and newest first.
    pub async fn open_findings(
        &self,
        project: Option<&str>,
        min: Severity,
    ) -> Result<Vec<StoredFinding>> {
        let rows = sqlx::query(select_findings!(
            "WHERE f.status = 'open' AND f.severity_rank >= $1 AND (CAST($2 AS TEXT) IS NULL OR p.name = $2) \
             ORDER BY f.severity_rank DESC, f.updated_at DESC, f.kind LIMIT 1000"
        ))
        .bind(severity_rank(min))
        .bind(project.map(str::to_string))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(finding_from_row).collect()
    }

    pub async fn add_webhook(&self, w: &NewWebhook) -> Result<Webhook> {
        let _guard = self.write_guard().await;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO webhooks (url, format, min_severity, min_rank, secret, project, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&w.url)
        .bind(w.format.as_str())
        .bind(w.min_severity.as_str())
        .bind(severity_rank(w.min_severity))
        .bind(w.secret.clone())
        .bind(w.project.clone())
        .bind(now())
        .fetch_one(self.pool())
        .await?;
        drop(_guard);
        let hooks = self.webhooks().await?;
        hooks
            .into_iter()
            .find(|h| h.id == id)
            .ok_or(StoreError::Corrupt("webhook vanished".into()))
    }

    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let rows = sqlx::query(
            "SELECT id, url, format, min_severity, project, CASE WHEN secret IS NULL THEN 0 ELSE 1 END, created_at \
             FROM webhooks ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let format: String = r.try_get(2)?;
                let min: String = r.try_get(3)?;
                Ok(Webhook {
                    id: r.try_get(0)?,
                    url: r.try_get(1)?,
                    format: Format::parse(&format)
                        .ok_or_else(|| StoreError::Corrupt(format!("format {format}")))?,
                    min_severity: alerts::parse_severity(&min)
                        .ok_or_else(|| StoreError::Corrupt(format!("severity {min}")))?,
                    project: r.try_get(4)?,
                    signed: r.try_get::<i64, _>(5)? == 1,
                    created_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Removes a webhook and its undelivered alerts; false when there was none.
    pub async fn remove_webhook(&self, id: i64) -> Result<bool> {
        let _guard = self.write_guard().await;
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM alert_outbox WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims up to `limit` due outbox rows for `lease` seconds.
    pub async fn claim_deliveries(&self, limit: i64, lease: f64) -> Result<Vec<Delivery>> {
        let now = now();
        let candidates: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= $1 AND lease_until < $1 \
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut claimed = Vec::new();
        for id in candidates {
            let _guard = self.write_guard().await;
            let done = sqlx::query(
                "UPDATE alert_outbox SET lease_until = $2 WHERE id = $1 AND status = 'pending' AND lease_until < $3",
            )
            .bind(id)
            .bind(now + lease)
            .bind(now)
            .execute(self.pool())
            .await?;
            drop(_guard);
            if done.rows_affected() != 1 {
                continue;
            }
            let r = sqlx::query(
                "SELECT o.id, o.delivery_id, w.url, w.secret, o.body, o.attempts \
                 FROM alert_outbox o JOIN webhooks w ON w.id = o.webhook_id WHERE o.id = $1",
            )
            .bind(id)
            .fetch_one(self.pool())
            .await?;
            claimed.push(Delivery {
                id: r.try_get(0)?,
                delivery_id: r.try_get(1)?,
                url: r.try_get(2)?,
                secret: r.try_get(3)?,
                body: r.try_get(4)?,
                attempts: r.try_get(5)?,
            });
        }
        Ok(claimed)
    }

    pub async fn delivery_succeeded(&self, id: i64) -> Result<()> {
        let _guard = self.write_guard().await;
        sqlx::query(
            "UPDATE alert_outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = $2, \
             lease_until = 0, last_error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a failed attempt: retry at `retry_at`, or give up when `None`.
    pub async fn delivery_failed(&self, id: i64, retry_at: Option<f64>, error: &str) -> Result<()> {
        let _guard = self.write_guard().await;
        let (status, next) = match retry_at {
            Some(t) => ("pending", t),
            None => ("failed", now()),
        };
        sqlx::query(
            "UPDATE alert_outbox SET status = $2, attempts = attempts + 1, next_attempt_at = $3, lease_until = 0, \
             last_error = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(next)
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn deliveries(&self) -> Result<Vec<DeliveryInfo>> {
        let rows = sqlx::query(
            "SELECT delivery_id, webhook_id, run_id, kind, status, attempts, last_error FROM alert_outbox ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryInfo {
                    delivery_id: r.try_get(0)?,
                    webhook_id: r.try_get(1)?,
                    run_id: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    status: r.try_get(4)?,
                    attempts: r.try_get(5)?,
                    last_error: r.try_get(6)?,
                })
            })
            .collect()
    }
}

/// Webhooks that apply to `project`: (id, format, minimum severity rank).
async fn webhooks_for(
    conn: &mut sqlx::AnyConnection,
    project: &str,
) -> Result<Vec<(i64, Format, i64)>> {
    let rows = sqlx::query(
        "SELECT id, format, min_rank FROM webhooks WHERE project IS NULL OR project = $1",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let format: String = r.try_get(1)?;
            Ok((
                r.try_get(0)?,
                Format::parse(&format)
                    .ok_or_else(|| StoreError::Corrupt(format!("format {format}")))?,
                r.try_get(2)?,
            ))
        })
        .collect()
}

fn finding_from_row(r: &AnyRow) -> Result<StoredFinding> {
    let status: String = r.try_get(3)?;
    let kind: String = r.try_get(4)?;
    let severity: String = r.try_get(5)?;
    let resolved_at: f64 = r.try_get(13)?;
    let evidence: Evidence = json_column(r, 8)?;
    Ok(StoredFinding {
        run_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        run_name: r.try_get(1)?,
        project: r.try_get(2)?,
        status: if status == "open" {
            FindingStatus::Open
        } else {
            FindingStatus::Resolved
        },
        finding: Finding {
            kind: Kind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("finding kind {kind}")))?,
            severity: alerts::parse_severity(&severity)
                .ok_or_else(|| StoreError::Corrupt(format!("severity {severity}")))?,
            onset_step: r.try_get::<Option<i64>, _>(6)?.map(|s| s as u64),
            title: r.try_get(7)?,
            evidence,
            cause: r.try_get(9)?,
            fixes: json_column(r, 10)?,
        },
        first_seen_at: r.try_get(11)?,
        updated_at: r.try_get(12)?,
        resolved_at: (resolved_at > 0.0).then_some(resolved_at),
    })
}

fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("run id {s:?}: {e}")))
}
