//! `trainlens webhook add|list|remove`: the operator's webhooks, in the
//! database directly.

use anyhow::bail;
use clap::Subcommand;

use super::printable;
use crate::store::webhooks::Webhook;

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook.
    Add {
        url: String,
        /// slack, discord or json.
        #[arg(long, default_value = "json")]
        format: String,
        /// Alert on findings at least this severe.
        #[arg(long, default_value = "warning")]
        min_severity: String,
        /// Sign JSON payloads with HMAC-SHA256 of this secret
        /// (`X-Trainlens-Signature: sha256=…`).
        #[arg(long, env = "TRAINLENS_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Only runs of this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// List webhooks (secrets are not shown).
    List,
    /// Remove a webhook and its undelivered alerts.
    Remove { id: i64 },
}

pub async fn webhook(global: &super::Global, command: WebhookCommand) -> anyhow::Result<()> {
    let store = global.open_store().await?;
    let result = async {
        match command {
            WebhookCommand::Add {
                url,
                format,
                min_severity,
                secret,
                project,
            } => {
                let hook = crate::api::findings::new_webhook(
                    url,
                    Some(&format),
                    Some(&min_severity),
                    secret,
                    project,
                )?;
                let hook = store.add_webhook(&hook).await?;
                let Shown {
                    id,
                    url,
                    format,
                    min,
                } = Shown::of(&hook);
                let project = hook
                    .project
                    .map(|p| format!(", project {}", printable(&p)))
                    .unwrap_or_default();
                println!("webhook {id} added: {url} ({format}, {min} or worse{project})");
            }
            WebhookCommand::List => {
                for h in store.webhooks().await? {
                    let Shown {
                        id,
                        url,
                        format,
                        min,
                    } = Shown::of(&h);
                    let project = printable(h.project.as_deref().unwrap_or("*"));
                    let signed = if h.signed { "signed" } else { "unsigned" };
                    println!("{id}\t{url}\t{format}\t{min}+\t{project}\t{signed}");
                }
            }
            WebhookCommand::Remove { id } => {
                if !store.remove_webhook(id).await? {
                    bail!("no webhook {id}");
                }
                println!("webhook {id} removed");
            }
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result
}

/// What `add` and `list` both show of a webhook.
struct Shown {
    id: i64,
    url: String,
    format: &'static str,
    min: &'static str,
}

impl Shown {
    fn of(hook: &Webhook) -> Self {
        Shown {
            id: hook.id,
            url: printable(&hook.url),
            format: hook.format.as_str(),
            min: hook.min_severity.as_str(),
        }
    }
}
