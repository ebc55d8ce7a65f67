//! The background task that keeps every run's findings current: the
//! I/O around the pure detectors of `diagnostics`.
//!
//! Every `poll` it asks the store for runs whose data is newer than their
//! diagnosis and has been quiet for `quiet`, or which are still being
//! written and whose diagnosis is old enough (see
//! [`RunnerConfig::wait_after`]: a run that never pauses is re-diagnosed as
//! often as its diagnosis is cheap enough to, between `min_wait` and
//! `max_wait`), takes the run's lease (one replica at a time), loads the run
//! and runs the detectors on a blocking thread. The alert policy
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::alerts;
use crate::store::findings::{DiagnosisToSave, Saved};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// A run without new data for this long (paused, or ended) is diagnosed
    /// at once.
    pub quiet: Duration,
    /// A run still being written is re-diagnosed once its last diagnosis is
    /// `cost_factor` times as old as that diagnosis took, but never sooner
    /// than `min_wait` after it nor later than `max_wait` (see
    /// [`RunnerConfig::wait_after`]).
    pub min_wait: Duration,
    pub max_wait: Duration,
    pub cost_factor: u32,
    /// How often the store is asked for due runs (sooner when a run being
    /// written falls due before).
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
            min_wait: Duration::from_millis(200),
            max_wait: Duration::from_millis(1500),
            cost_factor: 10,
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

impl RunnerConfig {
    /// How long after a diagnosis that took `took` a run still being written
    /// is diagnosed again: `cost_factor` × `took`, within `min_wait` and
    /// `max_wait`. A fault is seen as soon as the data shows it (a NaN loss
    /// is one step: at 100 steps/s `max_wait` alone would put up to 150
    /// steps between it and the warning), while diagnosing one run that
    /// never pauses takes at most about 1/(`cost_factor` + 1) of the
    /// runner's time, however large the run grows.
    pub fn wait_after(&self, took: Duration) -> Duration {
        took.saturating_mul(self.cost_factor)
            .clamp(self.min_wait, self.max_wait.max(self.min_wait))
    }
}

/// When this replica last diagnosed a run, and how long that took.
#[derive(Debug, Clone, Copy)]
struct Recent {
    done: Instant,
    took: Duration,
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
    /// Runs diagnosed within the last `max_wait` (older entries no longer
    /// hold a run back and are dropped).
    recent: Mutex<HashMap<Uuid, Recent>>,
}

impl Runner {
    pub fn new(store: Arc<Store>, config: RunnerConfig, alerts: Arc<Notify>) -> Self {
        Runner {
            store,
            config,
            owner: Uuid::new_v4().to_string(),
            alerts,
            recent: Mutex::new(HashMap::new()),
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
            let pause = self.next_pause(Instant::now());
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
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

    /// Until the next pass: `poll`, or less when a run diagnosed lately
    /// falls due before.
    fn next_pause(&self, now: Instant) -> Duration {
        let recent = self.recent.lock().expect("recent runs");
        recent
            .values()
            .map(|r| r.done + self.config.wait_after(r.took))
            .filter(|due| *due > now)
            .map(|due| due - now)
            .fold(self.config.poll, Duration::min)
    }

    /// Whether `run`, still being written, was diagnosed here too lately
    /// (for what its diagnosis costs) to be diagnosed again at `now`.
    fn held_back(&self, run: Uuid, now: Instant) -> bool {
        let mut recent = self.recent.lock().expect("recent runs");
        let max_wait = self.config.max_wait.max(self.config.min_wait);
        recent.retain(|_, r| now.saturating_duration_since(r.done) < max_wait);
        recent
            .get(&run)
            .is_some_and(|r| now.saturating_duration_since(r.done) < self.config.wait_after(r.took))
    }

    /// Diagnoses every due run this replica can take.
    pub async fn tick(&self) -> Result<Vec<Diagnosed>, StoreError> {
        let due = self
            .store
            .due_runs(
                self.config.quiet.as_secs_f64(),
                self.config.min_wait.as_secs_f64(),
                64,
            )
            .await?;
        let mut done = Vec::new();
        for due in due {
            if !due.quiet && self.held_back(due.run, Instant::now()) {
                continue;
            }
            let run = due.run;
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
        let took = started.elapsed();
        tracing::debug!(%run, took_ms = took.as_secs_f64() * 1e3, "diagnosed");
        self.recent.lock().expect("recent runs").insert(
            run,
            Recent {
                done: Instant::now(),
                took,
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_ms: u64, max_ms: u64, factor: u32) -> RunnerConfig {
        let mut c = RunnerConfig::new("http://x");
        c.min_wait = Duration::from_millis(min_ms);
        c.max_wait = Duration::from_millis(max_ms);
        c.cost_factor = factor;
        c
    }

    #[test]
    fn the_wait_is_cost_factor_times_the_diagnosis_within_min_and_max_wait() {
        let c = config(200, 1500, 10);
        let ms = |n| Duration::from_millis(n);
        assert_eq!(c.wait_after(ms(5)), ms(200), "cheap: min_wait");
        assert_eq!(c.wait_after(ms(50)), ms(500));
        assert_eq!(
            c.wait_after(ms(400)),
            ms(1500),
            "costly: never past max_wait"
        );
        assert_eq!(c.wait_after(Duration::MAX), ms(1500), "no overflow");
        // A max_wait below min_wait (as the tests' eager runner sets) is min_wait.
        assert_eq!(config(200, 0, 10).wait_after(ms(1)), ms(200));
        assert_eq!(config(0, 0, 10).wait_after(ms(1)), Duration::ZERO);
    }

    #[test]
    fn at_100_steps_per_second_a_cheap_diagnosis_comes_every_20_steps_not_150() {
        let c = RunnerConfig::new("http://x");
        let steps = |d: Duration| d.as_secs_f64() * 100.0;
        assert_eq!(steps(c.wait_after(Duration::from_millis(10))), 20.0);
        assert_eq!(steps(c.max_wait), 150.0);
    }
}
