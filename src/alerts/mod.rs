//! Webhook alerts: payload formats and signatures (pure), and the sender
//! that delivers the alert outbox ([`sender`]).

pub mod sender;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use std::collections::HashMap;

use crate::diagnostics::{Diagnosis, Finding, Kind};
use crate::model::{FindingStatus, Severity};

/// How a webhook wants its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Slack,
    Discord,
    Json,
}

crate::model::words!(Format, "format", [
    Slack => "slack",
    Discord => "discord",
    Json => "json",
]);

/// A finding of the run as it was stored before a diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prior {
    pub status: FindingStatus,
    pub severity: Severity,
    /// How many times this finding went into alerting so far.
    pub alert_epoch: i64,
}

impl Prior {
    fn alerting(&self) -> bool {
        self.status == FindingStatus::Open && self.severity.is_raised()
    }
}

/// A finding of the new diagnosis, with the alert epoch to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Current<'a> {
    pub finding: &'a Finding,
    pub epoch: i64,
    /// It went into warning-or-worse with this diagnosis (it was not open at
    /// that level before): each matching webhook gets one alert.
    pub alerting: bool,
}

/// What a diagnosis changes in a run's findings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transitions<'a> {
    /// Every finding of the diagnosis, to open or update.
    pub current: Vec<Current<'a>>,
    /// Findings that were open and no longer hold: to resolve, never delete.
    pub resolved: Vec<Kind>,
}

impl Transitions<'_> {
    /// The kinds that went into alerting.
    pub fn raised(&self) -> Vec<Kind> {
        self.current
            .iter()
            .filter(|c| c.alerting)
            .map(|c| c.finding.kind)
            .collect()
    }
}

/// The alert policy: given the run's findings before (`before`) and a new
/// diagnosis, which findings went into alerting and which are resolved.
/// A finding alerts when it enters warning-or-worse — once, until it is
/// resolved or drops back to info; then a new raise is a new transition (its
/// epoch goes up, so the outbox takes it as a new alert).
pub fn transitions<'a>(before: &HashMap<Kind, Prior>, diagnosis: &'a Diagnosis) -> Transitions<'a> {
    let current = diagnosis
        .findings
        .iter()
        .map(|f| {
            let prior = before.get(&f.kind);
            let was = prior.is_some_and(Prior::alerting);
            let alerting = f.severity.is_raised() && !was;
            let epoch = prior.map_or(0, |p| p.alert_epoch) + i64::from(alerting);
            Current {
                finding: f,
                epoch,
                alerting,
            }
        })
        .collect();
    let mut resolved: Vec<Kind> = before
        .iter()
        .filter(|(kind, p)| {
            p.status == FindingStatus::Open && !diagnosis.findings.iter().any(|f| f.kind == **kind)
        })
        .map(|(kind, _)| *kind)
        .collect();
    resolved.sort();
    Transitions { current, resolved }
}

/// A webhook as the alert policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub id: i64,
    pub format: Format,
    pub min_severity: Severity,
}

/// The run an alert is about.
#[derive(Debug, Clone, Copy)]
pub struct RunRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub project: &'a str,
    /// The run's page.
    pub url: &'a str,
}

/// One row for the outbox: an alert for one webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub delivery_id: String,
    pub webhook_id: i64,
    pub kind: Kind,
    pub epoch: i64,
    pub body: String,
}

/// The alerts to queue: one per finding that went into alerting and webhook
/// whose minimum severity it reaches, rendered in the webhook's format.
/// `new_id` makes each delivery's idempotency id.
pub fn outgoing(
    t: &Transitions,
    hooks: &[Hook],
    run: RunRef,
    mut new_id: impl FnMut() -> String,
) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for c in t.current.iter().filter(|c| c.alerting) {
        for hook in hooks
            .iter()
            .filter(|h| c.finding.severity >= h.min_severity)
        {
            let delivery_id = new_id();
            let body = payload(
                hook.format,
                &Alert {
                    delivery_id: &delivery_id,
                    run_id: run.id,
                    run_name: run.name,
                    project: run.project,
                    run_url: run.url,
                    finding: c.finding,
                },
            );
            out.push(Outgoing {
                delivery_id,
                webhook_id: hook.id,
                kind: c.finding.kind,
                epoch: c.epoch,
                body,
            });
        }
    }
    out
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
                "caused_by": f.caused_by.map(|k| k.as_str()),
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
            if let Some(c) = f.caused_by {
                text.push_str(&format!("\nCaused by: {}", c.as_str()));
            }
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
                    "description": truncate(&format!("From {onset}. {}{}", f.cause, f.caused_by.map(|k| format!(" Caused by: {}.", k.as_str())).unwrap_or_default()), 4096),
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
    use crate::diagnostics::Evidence;

    fn finding() -> Finding {
        Finding {
            kind: Kind::Divergence,
            caused_by: None,
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
    fn every_format_names_the_cause_finding() {
        let mut f = finding();
        let json: serde_json::Value =
            serde_json::from_str(&payload(Format::Json, &alert(&f))).unwrap();
        assert!(json["finding"]["caused_by"].is_null());
        f.kind = Kind::DeadRelu;
        f.caused_by = Some(Kind::Divergence);
        let json: serde_json::Value =
            serde_json::from_str(&payload(Format::Json, &alert(&f))).unwrap();
        assert_eq!(json["finding"]["caused_by"], "divergence");
        for format in [Format::Slack, Format::Discord] {
            let body = payload(format, &alert(&f));
            assert!(body.contains("Caused by: divergence"), "{format:?}: {body}");
        }
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
        assert_eq!("discord".parse::<Format>(), Ok(Format::Discord));
        assert!("teams".parse::<Format>().is_err());
        assert_eq!("error".parse::<Severity>(), Ok(Severity::Error));
        assert!("fatal".parse::<Severity>().is_err());
    }

    fn found(kind: Kind, severity: Severity) -> Finding {
        Finding {
            kind,
            caused_by: None,
            severity,
            ..finding()
        }
    }

    fn prior(status: FindingStatus, severity: Severity, alert_epoch: i64) -> Prior {
        Prior {
            status,
            severity,
            alert_epoch,
        }
    }

    fn diagnosis(findings: Vec<Finding>) -> Diagnosis {
        Diagnosis {
            findings,
            ..Diagnosis::default()
        }
    }

    #[test]
    fn a_new_raised_finding_alerts_once() {
        let d = diagnosis(vec![found(Kind::Divergence, Severity::Critical)]);
        let t = transitions(&HashMap::new(), &d);
        assert_eq!(t.raised(), [Kind::Divergence]);
        assert_eq!(t.current[0].epoch, 1);
        // Still open at a raised level on the next diagnosis: no new alert.
        let before = HashMap::from([(
            Kind::Divergence,
            prior(FindingStatus::Open, Severity::Critical, 1),
        )]);
        let again = transitions(&before, &d);
        assert!(again.raised().is_empty());
        assert_eq!(again.current[0].epoch, 1);
        // A change of severity within raised levels does not alert again.
        let worse = diagnosis(vec![found(Kind::Divergence, Severity::Error)]);
        assert!(transitions(&before, &worse).raised().is_empty());
    }

    #[test]
    fn info_never_alerts_and_rising_from_info_does() {
        let info = diagnosis(vec![found(Kind::Overfitting, Severity::Info)]);
        let t = transitions(&HashMap::new(), &info);
        assert!(t.raised().is_empty());
        assert_eq!(t.current[0].epoch, 0);
        let before = HashMap::from([(
            Kind::Overfitting,
            prior(FindingStatus::Open, Severity::Info, 0),
        )]);
        let warn = diagnosis(vec![found(Kind::Overfitting, Severity::Warning)]);
        let t = transitions(&before, &warn);
        assert_eq!(t.raised(), [Kind::Overfitting]);
        assert_eq!(t.current[0].epoch, 1);
    }

    #[test]
    fn architecture_and_hyperparameter_hints_never_reach_a_webhook() {
        let d = diagnosis(vec![
            found(Kind::Architecture, Severity::Info),
            found(Kind::Hyperparameters, Severity::Info),
        ]);
        // Not on the first diagnosis, nor on a later one, even for a hook
        // that asks for every severity.
        let before = HashMap::from([(
            Kind::Architecture,
            prior(FindingStatus::Open, Severity::Info, 0),
        )]);
        let every = [Hook {
            id: 1,
            format: Format::Json,
            min_severity: Severity::Info,
        }];
        let run = RunRef {
            id: "r-1",
            name: "baseline",
            project: "mnist",
            url: "http://x/runs/r-1",
        };
        for prior in [HashMap::new(), before] {
            let t = transitions(&prior, &d);
            assert!(t.raised().is_empty());
            assert_eq!(t.current.len(), 2, "stored all the same");
            assert!(outgoing(&t, &every, run, || "d".into()).is_empty());
        }
    }

    #[test]
    fn gone_findings_resolve_and_a_raise_after_resolve_is_new() {
        let before = HashMap::from([
            (
                Kind::Divergence,
                prior(FindingStatus::Open, Severity::Critical, 1),
            ),
            (
                Kind::DeadRelu,
                prior(FindingStatus::Resolved, Severity::Error, 2),
            ),
        ]);
        let none = diagnosis(vec![]);
        let t = transitions(&before, &none);
        assert_eq!(t.resolved, [Kind::Divergence], "only open findings resolve");
        let back = diagnosis(vec![found(Kind::DeadRelu, Severity::Error)]);
        let t = transitions(&before, &back);
        assert_eq!(t.raised(), [Kind::DeadRelu]);
        assert_eq!(t.current[0].epoch, 3);
        assert_eq!(t.resolved, [Kind::Divergence]);
    }

    #[test]
    fn outgoing_goes_to_hooks_whose_minimum_is_reached() {
        let d = diagnosis(vec![
            found(Kind::Divergence, Severity::Critical),
            found(Kind::Overfitting, Severity::Warning),
        ]);
        let t = transitions(&HashMap::new(), &d);
        let hooks = [
            Hook {
                id: 1,
                format: Format::Json,
                min_severity: Severity::Warning,
            },
            Hook {
                id: 2,
                format: Format::Slack,
                min_severity: Severity::Error,
            },
        ];
        let run = RunRef {
            id: "r-1",
            name: "baseline",
            project: "mnist",
            url: "http://x/runs/r-1",
        };
        let mut n = 0;
        let out = outgoing(&t, &hooks, run, || {
            n += 1;
            format!("d-{n}")
        });
        let sent: Vec<(i64, Kind)> = out.iter().map(|o| (o.webhook_id, o.kind)).collect();
        assert_eq!(
            sent,
            [
                (1, Kind::Divergence),
                (2, Kind::Divergence),
                (1, Kind::Overfitting)
            ]
        );
        assert!(
            out[0].body.contains("\"id\":\"d-1\"") && out[0].body.contains("http://x/runs/r-1")
        );
        assert!(
            out[1].body.contains("*[critical] divergence*"),
            "{}",
            out[1].body
        );
    }
}
