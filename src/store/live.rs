//! What the live pages' event streams poll (`web/live.rs`): a run's data and
//! diagnosis versions, and which runs changed lately. Each is one small
//! indexed read, so that every replica's streams are fed from the database,
//! never from one process's memory — read through a pool of [`READERS`]
//! connections of their own, so that open pages never hold a connection
//! that a request, an ingest or the diagnosis needs.

use sqlx::FromRow;
use uuid::Uuid;

use super::{Result, Store, parse_uuid, parse_word};
use crate::model::RunStatus;

/// Where a run's page stands: a change of any field is a change the page
/// shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPulse {
    /// Bumped by every write of the run's data (and its status).
    pub data_version: i64,
    /// The data version the last saved diagnosis saw (0: none yet).
    pub diagnosed_version: i64,
    pub status: RunStatus,
    /// Open findings, of any severity.
    pub open_findings: i64,
}

#[derive(FromRow)]
struct PulseRow {
    data_version: i64,
    diagnosed_version: i64,
    status: String,
    open_findings: i64,
}

try_from_row!(PulseRow => RunPulse, |r| {
    Ok(RunPulse {
        data_version: r.data_version,
        diagnosed_version: r.diagnosed_version,
        status: parse_word(&r.status)?,
        open_findings: r.open_findings,
    })
});

#[derive(FromRow)]
struct ChangeRow {
    id: String,
    changed_at: f64,
}

/// Connections the live pages' polls read through, in each process: a poll
/// is one indexed read of well under a millisecond, so two serve hundreds of
/// open pages polling every second; past that a poll waits its turn (a page
/// is a moment later), never a request.
pub const READERS: u32 = 2;

/// Most rows [`Store::changed_runs`] answers: more runs changing within the
/// window than this is churn, and the newest of them tell it as well.
pub const MAX_CHANGED_RUNS: i64 = 500;

impl Store {
    /// Where `run` stands, or `None` when there is no such run: primary-key
    /// reads of the run and its diagnosis state and a count of its open
    /// findings on `findings_by_run`.
    pub async fn run_pulse(&self, run: Uuid) -> Result<Option<RunPulse>> {
        const SQL: &str = "SELECT r.data_version, r.status, \
             COALESCE(d.diagnosed_version, 0) AS diagnosed_version, \
             (SELECT CAST(COUNT(*) AS BIGINT) FROM findings f \
              WHERE f.run_id = r.id AND f.status = 'open') AS open_findings \
             FROM runs r LEFT JOIN diagnosis_state d ON d.run_id = r.id WHERE r.id = $1";
        let row: Option<PulseRow> = sqlx::query_as(SQL)
            .bind(run.to_string())
            .fetch_optional(&self.live_pool)
            .await?;
        row.map(RunPulse::try_from).transpose()
    }

    /// Runs (of `project`, or of every project) that changed after `since`
    /// (unix seconds, the `changed_at` the writers set), newest first, at
    /// most [`MAX_CHANGED_RUNS`]: a range read on `runs_by_change`.
    pub async fn changed_runs(
        &self,
        project: Option<&str>,
        since: f64,
    ) -> Result<Vec<(Uuid, f64)>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT r.id, r.changed_at FROM runs r JOIN projects p ON p.id = r.project_id \
             WHERE r.changed_at > $1 AND (CAST($2 AS TEXT) IS NULL OR p.name = $2) \
             ORDER BY r.changed_at DESC LIMIT $3",
        )
        .bind(since)
        .bind(project.map(str::to_string))
        .bind(MAX_CHANGED_RUNS)
        .fetch_all(&self.live_pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((parse_uuid(&r.id)?, r.changed_at)))
            .collect()
    }
}
