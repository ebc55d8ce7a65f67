//! Webhook alerts: payload formats and signatures (pure), and the sender
//! that delivers the alert outbox ([`sender`]).

pub mod sender;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use crate::diagnostics::{Finding, Severity};

/// How a webhook wants its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Slack,
    Discord,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Slack => "slack",
            Format::Discord => "discord",
            Format::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        [Format::Slack, Format::Discord, Format::Json]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

pub fn parse_severity(s: &str) -> Option<Severity> {
    [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ]
    .into_iter()
    .find(|v| v.as_str() == s)
}

/// Checks a webhook URL: absolute `http` or `https` with a host.
pub fn validate_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "webhook URLs must be http or https, not {}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("webhook URL has no host".into());
    }
    Ok(())
}

/// What an alert is about.
#[derive(Debug, Clone)]
pub struct Alert<'a> {
    /// The idempotency id: the same for every retry of one delivery.
    pub delivery_id: &'a str,
    pub run_id: &'a str,
    pub run_name: &'a str,
    pub project: &'a str,
    /// The run's page.
    pub run_url: &'a str,
    pub finding: &'a Finding,
}

/// The body to POST for `alert` in `format`.
pub fn payload(format: Format, alert: &Alert) -> String {
    let f = alert.finding;
    let onset = f
        .onset_step
        .map_or_else(|| "an unknown step".to_string(), |s| format!("step {s}"));
    let value = match format {
        Format::Json => json!({
            "id": alert.delivery_id,
            "event": "finding.raised",
            "run": {
                "id": alert.run_id,
                "name": alert.run_name,
                "project": alert.project,
                "url": alert.run_url,
            },
            "finding": {
                "kind": f.kind.as_str(),
                "severity": f.severity.as_str(),
                "onset_step": f.onset_step,
                "title": f.title,
                "cause": f.cause,
                "fixes": f.fixes,
                "evidence": f.evidence,
            },
        }),
        Format::Slack => {
            let esc = |s: &str| {
                s.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            };
            let mut text = format!(
                "*[{}] {}* in <{}|{}/{}> from {}\n{}",
                f.severity.as_str(),
                f.kind.as_str(),
                alert.run_url,
                esc(alert.project),
                esc(alert.run_name),
                onset,
                esc(&f.title),
            );
            if let Some(fix) = f.fixes.first() {
                text.push_str(&format!("\nTry: {}", esc(fix)));
            }
            json!({
                "text": text,
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": text } },
                    { "type": "context", "elements": [
                        { "type": "mrkdwn", "text": format!("trainlens alert {}", alert.delivery_id) }
                    ] }
                ],
            })
        }
        Format::Discord => {
            let color = match f.severity {
                Severity::Critical => 0xB0_1E_1E,
                Severity::Error => 0xE0_4B_2B,
                Severity::Warning => 0xE0_A8_2B,
                Severity::Info => 0x4B_7B_E0,
            };
            let truncate = |s: &str, n: usize| s.chars().take(n).collect::<String>();
            json!({
                "content": truncate(&format!("[{}] {} in {}/{}", f.severity.as_str(), f.kind.as_str(), alert.project, alert.run_name), 2000),
                "allowed_mentions": { "parse": [] },
                "embeds": [{
                    "title": truncate(&f.title, 256),
                    "url": alert.run_url,
                    "description": truncate(&format!("From {onset}. {}", f.cause), 4096),
                    "color": color,
                    "fields": f.fixes.iter().take(3).map(|fix| json!({"name": "Try", "value": truncate(fix, 1024)})).collect::<Vec<_>>(),
                    "footer": { "text": format!("trainlens alert {}", alert.delivery_id) },
                }],
            })
        }
    };
    value.to_string()
}

/// `sha256=<hex HMAC-SHA256 of body>`, the `X-Trainlens-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::{Evidence, Kind};

    fn finding() -> Finding {
        Finding {
            kind: Kind::Divergence,
            severity: Severity::Critical,
            onset_step: Some(1240),
            title: "Training loss became NaN at step 1,240 <b>".into(),
            evidence: Evidence::default(),
            cause: "The learning rate is too high.".into(),
            fixes: vec!["Lower the learning rate ÷10 (to 0.05).".into()],
        }
    }

    fn alert(f: &Finding) -> Alert<'_> {
        Alert {
            delivery_id: "d-1",
            run_id: "r-1",
            run_name: "baseline",
            project: "mnist",
            run_url: "http://127.0.0.1:8080/runs/r-1",
            finding: f,
        }
    }

    #[test]
    fn every_format_names_run_kind_severity_onset_title_url_and_id() {
        let f = finding();
        for format in [Format::Json, Format::Slack, Format::Discord] {
            let body = payload(format, &alert(&f));
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            for needle in [
                "d-1",
                "divergence",
                "critical",
                "1240",
                "http://127.0.0.1:8080/runs/r-1",
                "baseline",
            ] {
                assert!(body.contains(needle), "{format:?} lacks {needle}: {body}");
            }
            assert!(v.is_object());
        }
        let slack = payload(Format::Slack, &alert(&f));
        assert!(
            slack.contains("&lt;b&gt;"),
            "Slack text is escaped: {slack}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&payload(Format::Json, &alert(&f))).unwrap();
        assert_eq!(json["finding"]["onset_step"], 1240);
        assert_eq!(json["run"]["project"], "mnist");
    }

    #[test]
    fn signature_is_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!(Format::parse("discord"), Some(Format::Discord));
        assert_eq!(Format::parse("teams"), None);
        assert_eq!(parse_severity("error"), Some(Severity::Error));
        assert_eq!(parse_severity("fatal"), None);
    }
}
