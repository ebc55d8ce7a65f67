//! The one client for a running trainlens server (`--server` /
//! `TRAINLENS_SERVER`): builds the URLs, sends, and turns an answer that is
//! not a success into one error message, read one way for every command.

use anyhow::{Context, bail};
use reqwest::{RequestBuilder, Response, StatusCode};

/// A trainlens server at a base URL such as `http://127.0.0.1:8080`.
pub struct Remote {
    base: String,
    client: reqwest::Client,
}

impl Remote {
    pub fn new(server: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            client: crate::http_client()
                .build()
                .context("building the HTTP client")?,
        })
    }

    /// `path` (starting with `/`) on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(self.url(path))
    }

    /// Sends `req`; any answer but a success becomes an error that names the
    /// status and the server's message.
    pub async fn send(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let req = req.build().context("building the request")?;
        let url = req.url().clone();
        let resp = self
            .client
            .execute(req)
            .await
            .with_context(|| format!("sending to {url}"))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        bail!("{}", error_message(status, &body))
    }

    /// Sends `req` and parses the JSON answer.
    pub async fn json(&self, req: RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let resp = self.send(req).await?;
        let url = resp.url().clone();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading {url}"))?;
        serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON"))
    }
}

/// Longest piece of a non-JSON error body quoted in a message.
const MAX_QUOTED_BODY: usize = 300;

/// The message for a failed answer: the API's JSON error
/// (`{"error":{"message","field",…}}`) when the body is one, else the start
/// of the body as text (a proxy's HTML page, say).
pub fn error_message(status: StatusCode, body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let error = &json["error"];
    let detail = match (error["message"].as_str(), error["field"].as_str()) {
        (Some(message), Some(field)) => format!("{message} (field `{field}`)"),
        (Some(message), None) => message.to_string(),
        _ => {
            let text = body.trim();
            if text.is_empty() {
                "no error message".to_string()
            } else {
                let cut: String = text.chars().take(MAX_QUOTED_BODY).collect();
                let more = if cut.len() < text.len() { "…" } else { "" };
                format!("{cut}{more}")
            }
        }
    };
    super::printable(&format!("server answered {status}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_give_their_message_and_field() {
        let body =
            r#"{"error":{"code":"invalid","message":"must be finite","field":"points[3].value"}}"#;
        assert_eq!(
            error_message(StatusCode::UNPROCESSABLE_ENTITY, body),
            "server answered 422 Unprocessable Entity: must be finite (field `points[3].value`)"
        );
        let body = r#"{"error":{"code":"not_found","message":"no run 42","field":null}}"#;
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, body),
            "server answered 404 Not Found: no run 42"
        );
    }

    #[test]
    fn other_bodies_are_quoted_short_and_printable() {
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, ""),
            "server answered 502 Bad Gateway: no error message"
        );
        let html = format!("<html>\u{1b}[2J{}</html>", "x".repeat(1000));
        let msg = error_message(StatusCode::BAD_GATEWAY, &html);
        assert!(msg.ends_with('…'), "{msg}");
        assert!(msg.len() < 400, "{msg}");
        assert!(!msg.contains('\u{1b}'), "{msg}");
    }
}
