//! The background task that keeps every run's findings current: the
//! I/O around the pure detectors of `diagnostics`.
//!
//! Every `poll` it asks the store for runs whose data is newer than their
//! diagnosis and has been quiet for `quiet` (or whose diagnosis is
//! `max_wait` old, so a run that never pauses is still re-diagnosed), takes
//! the run's lease (one replica at a time), loads the run and runs the
//! detectors on a blocking thread. The alert policy
//! ([`alerts::transitions`], pure) compares the result with the stored
//! findings; the runner, which knows the public URL, renders the alerts
//! ([`alerts::outgoing`]); the store saves findings, notes and outbox rows in
//! one transaction that also releases the lease.
//!
//! A diagnosis is bounded in time ([`RunnerConfig::budget`], below the lease):
//! a run that cannot be loaded and diagnosed within it, or whose detectors
//! panic, keeps its findings, gets a note saying so and counts as diagnosed
//! at that data version — so it is not retried in a loop, and the other runs
//! go on. A run that fails (e.g. a lost lease) is logged and skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::alerts;
use crate::store::findings::{DiagnosisToSave, Saved};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub quiet: Duration,
    pub max_wait: Duration,
    pub poll: Duration,
    /// How long a replica may hold a run before another may take it over.
    pub lease: Duration,
    /// How long one run's load and diagnosis may take (less than `lease`).
    pub budget: Duration,
    /// Base URL of the pages, for alert payloads.
    pub public_url: String,
    /// A running run without data or heartbeat for this long is marked
    /// crashed; `None`: never.
    pub crash_after: Option<Duration>,
    /// How long a retried batch's `Idempotency-Key` is recognised.
    pub idempotency_ttl: Duration,
    /// How often the housekeeping above runs.
    pub housekeeping: Duration,
}

impl RunnerConfig {
    pub fn new(public_url: &str) -> Self {
        RunnerConfig {
            quiet: Duration::from_millis(500),
            max_wait: Duration::from_millis(1500),
            poll: Duration::from_millis(250),
            lease: Duration::from_secs(60),
            budget: Duration::from_secs(20),
            public_url: public_url.to_string(),
            crash_after: Some(Duration::from_secs(15 * 60)),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            housekeeping: Duration::from_secs(30),
        }
    }
}

/// One diagnosis made by [`Runner::tick`].
#[derive(Debug, Clone)]
pub struct Diagnosed {
    pub run: Uuid,
    /// Just after the lease was taken.
    pub started: Instant,
    /// Just before the findings were saved (which releases the lease).
    pub saving: Instant,
    pub saved: Saved,
}

pub struct Runner {
    store: Arc<Store>,
    config: RunnerConfig,
    owner: String,
    /// Woken when alerts were queued.
    alerts: Arc<Notify>,
}

impl Runner {
    pub fn new(store: Arc<Store>, config: RunnerConfig, alerts: Arc<Notify>) -> Self {
        Runner {
            store,
            config,
            owner: Uuid::new_v4().to_string(),
            alerts,
        }
    }

    /// Diagnoses until `cancel` fires; a diagnosis in progress is finished.
    pub async fn run(self, cancel: CancellationToken) {
        let mut last_housekeeping: Option<Instant> = None;
        loop {
            if last_housekeeping.is_none_or(|t| t.elapsed() >= self.config.housekeeping) {
                last_housekeeping = Some(Instant::now());
                if let Err(e) = self.housekeeping().await {
                    tracing::warn!(error = %e, "housekeeping failed");
                }
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "diagnosis pass failed");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// Marks silent runs crashed and forgets old idempotency keys.
    pub async fn housekeeping(&self) -> Result<(), StoreError> {
        if let Some(after) = self.config.crash_after {
            let n = self.store.mark_crashed(after.as_secs_f64()).await?;
            if n > 0 {
                tracing::info!(runs = n, "marked runs without data or heartbeat as crashed");
            }
        }
        self.store
            .prune_idempotency_keys(self.config.idempotency_ttl.as_secs_f64())
            .await?;
        Ok(())
    }

    /// Diagnoses every due run this replica can take.
    pub async fn tick(&self) -> Result<Vec<Diagnosed>, StoreError> {
        let due = self
            .store
            .due_runs(
                self.config.quiet.as_secs_f64(),
                self.config.max_wait.as_secs_f64(),
                64,
            )
            .await?;
        let mut done = Vec::new();
        for run in due {
            match self.diagnose(run).await {
                Ok(Some(d)) => done.push(d),
                Ok(None) => {}
                // The store as a whole is away: stop this pass.
                Err(e @ (StoreError::Unavailable(_) | StoreError::Full(_))) => return Err(e),
                Err(e) => tracing::warn!(%run, error = %e, "diagnosis failed"),
            }
        }
        Ok(done)
    }

    /// Diagnoses one run now if its lease is free.
    pub async fn diagnose(&self, run: Uuid) -> Result<Option<Diagnosed>, StoreError> {
        if !self
            .store
            .claim_run(run, &self.owner, self.config.lease.as_secs_f64())
            .await?
        {
            return Ok(None);
        }
        let started = Instant::now();
        let result = self.diagnose_claimed(run).await;
        if result.is_err() {
            let _ = self.store.release_run(run, &self.owner).await;
        }
        let (saved, saving) = match result? {
            Some(done) => done,
            None => return Ok(None),
        };
        if saved.alerts > 0 {
            self.alerts.notify_one();
        }
        if !saved.raised.is_empty() || !saved.resolved.is_empty() {
            tracing::info!(%run, raised = ?saved.raised, resolved = ?saved.resolved, "findings changed");
        }
        Ok(Some(Diagnosed {
            run,
            started,
            saving,
            saved,
        }))
    }

    async fn diagnose_claimed(&self, run: Uuid) -> Result<Option<(Saved, Instant)>, StoreError> {
        let budget = self.config.budget;
        let load_and_diagnose = async {
            let Some((meta, view)) = self.store.run_view(run).await? else {
                return Ok(None);
            };
            let diagnosis =
                tokio::task::spawn_blocking(move || crate::diagnostics::diagnose(&view)).await;
            Ok::<_, StoreError>(Some((meta, diagnosis)))
        };
        let (meta, diagnosis) = match tokio::time::timeout(budget, load_and_diagnose).await {
            Ok(Ok(Some((meta, Ok(diagnosis))))) => (meta, diagnosis),
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Some((meta, Err(panic))))) => {
                tracing::error!(%run, error = %panic, "the detectors panicked on this run");
                let note = "the detectors failed on this run (see the server log); its findings are as they were"
                    .to_string();
                return self.save_note(run, meta.data_version, note).await;
            }
            Err(_) => {
                tracing::warn!(%run, budget_s = budget.as_secs_f64(), "diagnosis over its time budget");
                let Some(meta) = self.store.get_run(run).await? else {
                    return Ok(None);
                };
                let note = format!(
                    "this run could not be diagnosed within {} s; its findings are as they were",
                    budget.as_secs()
                );
                return self.save_note(run, meta.data_version, note).await;
            }
        };
        let saving = Instant::now();
        let priors = self.store.finding_priors(run).await?;
        let hooks = self.store.hooks_for(&meta.project).await?;
        let changes = alerts::transitions(&priors, &diagnosis);
        let run_id = meta.id.to_string();
        let url = format!(
            "{}/runs/{run_id}",
            self.config.public_url.trim_end_matches('/')
        );
        let outgoing = alerts::outgoing(
            &changes,
            &hooks,
            alerts::RunRef {
                id: &run_id,
                name: &meta.name,
                project: &meta.project,
                url: &url,
            },
            || Uuid::new_v4().to_string(),
        );
        let saved = self
            .store
            .save_diagnosis(&DiagnosisToSave {
                run,
                version: meta.data_version,
                owner: &self.owner,
                notes: &diagnosis.notes,
                changes: &changes,
                alerts: &outgoing,
            })
            .await?;
        Ok(Some((saved, saving)))
    }

    /// Saves a diagnosis that changes no finding, only says `note`.
    async fn save_note(
        &self,
        run: Uuid,
        version: i64,
        note: String,
    ) -> Result<Option<(Saved, Instant)>, StoreError> {
        let saving = Instant::now();
        let saved = self
            .store
            .save_diagnosis(&DiagnosisToSave {
                run,
                version,
                owner: &self.owner,
                notes: &[note],
                changes: &alerts::Transitions::default(),
                alerts: &[],
            })
            .await?;
        Ok(Some((saved, saving)))
    }
}
