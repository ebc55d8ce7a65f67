//! Delivers the alert outbox: claims due rows, POSTs them, retries failures
//! with exponential backoff. A row stays in the database until it is
//! delivered or given up, so a restart loses nothing; its `delivery_id`
//! stays the same on every retry, so a receiver can drop a repeat.
//!
//! Safety: URLs come only from the operator (CLI, or the API with the admin
//! token); redirects are never followed and no proxy is used, so a payload and
//! its signature go to that URL and nowhere else. Secrets are never logged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::signature;
use crate::store::Store;
use crate::store::webhooks::Delivery;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Wait after the first failure; doubles with every further one.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: i64,
    /// Per request.
    pub timeout: Duration,
    /// How often to look for due rows when not woken.
    pub poll: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            max_attempts: 12,
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(500),
        }
    }
}

impl SenderConfig {
    /// Delay before the next attempt after `failures` failed ones (≥ 1).
    pub fn backoff(&self, failures: i64) -> Duration {
        let exp = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.base_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }
}

pub struct Sender {
    store: Arc<Store>,
    client: reqwest::Client,
    config: SenderConfig,
    wake: Arc<Notify>,
}

impl Sender {
    pub fn new(store: Arc<Store>, config: SenderConfig, wake: Arc<Notify>) -> Self {
        let client = crate::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .user_agent(concat!("trainlens/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        Sender {
            store,
            client,
            config,
            wake,
        }
    }

    /// Delivers until `cancel` fires. A delivery in progress is finished first.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "alert delivery pass failed");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// One pass over the due rows; returns how many were delivered.
    pub async fn deliver_due(&self) -> Result<usize, crate::store::StoreError> {
        let lease = (self.config.timeout.as_secs_f64() * 2.0 + 5.0).max(10.0);
        let mut delivered = 0;
        loop {
            let batch = self.store.claim_deliveries(16, lease).await?;
            if batch.is_empty() {
                return Ok(delivered);
            }
            for d in batch {
                match self.attempt(&d).await {
                    Ok(()) => {
                        self.store.delivery_succeeded(d.id).await?;
                        delivered += 1;
                        tracing::info!(delivery = %d.delivery_id, "alert delivered");
                    }
                    Err(error) => {
                        let failures = d.attempts + 1;
                        let retry_at = (failures < self.config.max_attempts).then(|| {
                            crate::store::now() + self.config.backoff(failures).as_secs_f64()
                        });
                        tracing::warn!(delivery = %d.delivery_id, attempt = failures, %error, gave_up = retry_at.is_none(), "alert delivery failed");
                        self.store.delivery_failed(d.id, retry_at, &error).await?;
                    }
                }
            }
        }
    }

    async fn attempt(&self, d: &Delivery) -> Result<(), String> {
        let mut req = self
            .client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("x-trainlens-delivery", &d.delivery_id)
            .body(d.body.clone());
        if let Some(secret) = &d.secret {
            req = req.header(
                "x-trainlens-signature",
                signature(secret, d.body.as_bytes()),
            );
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("request failed: {}", without_url(&e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {status}"))
        }
    }
}

/// An error's text without the URL (which may carry a token, as Slack's do).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "error"
    };
    let mut msg = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = SenderConfig {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            ..Default::default()
        };
        let waits: Vec<u64> = (1..=8).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(c.backoff(1000).as_secs(), 60);
    }
}
