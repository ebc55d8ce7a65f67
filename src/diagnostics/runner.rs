//! The background task that keeps every run's findings current: the only
//! part of `diagnostics` that does I/O.
//!
//! Every `poll` it asks the store for runs whose data is newer than their
//! diagnosis and has been quiet for `quiet` (or whose diagnosis is
//! `max_wait` old, so a run that never pauses is still re-diagnosed), takes
//! the run's lease (one replica at a time), loads the run, runs the
//! detectors on a blocking thread and saves the findings, which queues the
//! alerts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::diagnosis::Saved;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub quiet: Duration,
    pub max_wait: Duration,
    pub poll: Duration,
    /// How long a replica may hold a run before another may take it over.
    pub lease: Duration,
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
            if let Some(d) = self.diagnose(run).await? {
                done.push(d);
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
        let Some((meta, view)) = self.store.run_view(run).await? else {
            return Ok(None);
        };
        let diagnosis = tokio::task::spawn_blocking(move || super::diagnose(&view))
            .await
            .map_err(|e| StoreError::Corrupt(format!("detectors panicked: {e}")))?;
        let saving = Instant::now();
        let saved = self
            .store
            .save_diagnosis(
                &meta,
                meta.data_version,
                &self.owner,
                &diagnosis,
                &self.config.public_url,
            )
            .await?;
        Ok(Some((saved, saving)))
    }
}
