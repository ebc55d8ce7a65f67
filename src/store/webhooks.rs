//! Webhooks and the alert outbox.
//!
//! An outbox row is delivered by one replica at a time: it claims the row
//! with an `UPDATE … WHERE lease_until < now` that changed one row; a
//! crashed sender's lease expires and another replica retries.

use serde::Serialize;
use sqlx::{AnyConnection, FromRow};

use super::{Result, Store, StoreError, now, parse_word};
use crate::alerts::{Format, Hook};
use crate::model::Severity;

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

#[derive(FromRow)]
struct WebhookRow {
    id: i64,
    url: String,
    format: String,
    min_severity: String,
    project: Option<String>,
    signed: i64,
    created_at: f64,
}

try_from_row!(WebhookRow => Webhook, |r| {
    Ok(Webhook {
        id: r.id,
        url: r.url,
        format: parse_word(&r.format)?,
        min_severity: parse_word(&r.min_severity)?,
        project: r.project,
        signed: r.signed == 1,
        created_at: r.created_at,
    })
});

#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    pub url: String,
    pub format: Format,
    pub min_severity: Severity,
    pub secret: Option<String>,
    pub project: Option<String>,
}

/// An outbox row claimed for delivery.
#[derive(Debug, Clone, FromRow)]
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
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct DeliveryInfo {
    pub delivery_id: String,
    pub webhook_id: i64,
    pub run_id: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(FromRow)]
struct HookRow {
    id: i64,
    format: String,
    min_severity: String,
}

impl Store {
    pub async fn add_webhook(&self, w: &NewWebhook) -> Result<Webhook> {
        let id: i64 = in_write!(self, |tx| {
            Ok(sqlx::query_scalar(
                    "INSERT INTO webhooks (url, format, min_severity, min_rank, secret, project, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(&w.url)
                .bind(w.format.as_str())
                .bind(w.min_severity.as_str())
                .bind(w.min_severity.rank())
                .bind(w.secret.clone())
                .bind(w.project.clone())
                .bind(now())
                .fetch_one(&mut **tx)
                .await?)
        })?;
        let hooks = self.webhooks().await?;
        hooks
            .into_iter()
            .find(|h| h.id == id)
            .ok_or(StoreError::Corrupt("webhook vanished".into()))
    }

    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(
            "SELECT id, url, format, min_severity, project, \
             CASE WHEN secret IS NULL THEN 0 ELSE 1 END AS signed, created_at \
             FROM webhooks ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    /// The webhooks that apply to `project`, as the alert policy sees them.
    pub async fn hooks_for(&self, project: &str) -> Result<Vec<Hook>> {
        let rows: Vec<HookRow> = sqlx::query_as(
            "SELECT id, format, min_severity FROM webhooks WHERE project IS NULL OR project = $1 ORDER BY id",
        )
        .bind(project)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Hook {
                    id: r.id,
                    format: parse_word(&r.format)?,
                    min_severity: parse_word(&r.min_severity)?,
                })
            })
            .collect()
    }

    /// Removes a webhook and its undelivered alerts; false when there was none.
    pub async fn remove_webhook(&self, id: i64) -> Result<bool> {
        in_write!(self, |tx| {
            let conn: &mut AnyConnection = tx;
            sqlx::query("DELETE FROM alert_outbox WHERE webhook_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected() == 1)
        })
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
            let taken = self
                .write_one(
                    sqlx::query(
                        "UPDATE alert_outbox SET lease_until = $2 WHERE id = $1 AND status = 'pending' AND lease_until < $3",
                    )
                    .bind(id)
                    .bind(now + lease)
                    .bind(now),
                )
                .await?;
            if taken != 1 {
                continue;
            }
            let delivery: Delivery = sqlx::query_as(
                "SELECT o.id, o.delivery_id, w.url, w.secret, o.body, o.attempts \
                 FROM alert_outbox o JOIN webhooks w ON w.id = o.webhook_id WHERE o.id = $1",
            )
            .bind(id)
            .fetch_one(self.pool())
            .await?;
            claimed.push(delivery);
        }
        Ok(claimed)
    }

    pub async fn delivery_succeeded(&self, id: i64) -> Result<()> {
        self.write_one(
            sqlx::query(
                "UPDATE alert_outbox SET status = 'delivered', attempts = attempts + 1, delivered_at = $2, \
                 lease_until = 0, last_error = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(now()),
        )
        .await?;
        Ok(())
    }

    /// Records a failed attempt: retry at `retry_at`, or give up when `None`.
    pub async fn delivery_failed(&self, id: i64, retry_at: Option<f64>, error: &str) -> Result<()> {
        let (status, next) = match retry_at {
            Some(t) => ("pending", t),
            None => ("failed", now()),
        };
        self.write_one(
            sqlx::query(
                "UPDATE alert_outbox SET status = $2, attempts = attempts + 1, next_attempt_at = $3, lease_until = 0, \
                 last_error = $4 WHERE id = $1",
            )
            .bind(id)
            .bind(status)
            .bind(next)
            .bind(error.to_string()),
        )
        .await?;
        Ok(())
    }

    pub async fn deliveries(&self) -> Result<Vec<DeliveryInfo>> {
        Ok(sqlx::query_as(
            "SELECT delivery_id, webhook_id, run_id, kind, status, attempts, last_error FROM alert_outbox ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?)
    }
}
