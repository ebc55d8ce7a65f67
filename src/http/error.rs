//! The one error type of the HTTP layer. The API renders it as
//! `{"error":{"code","message","field","line"?}}`; pages wrap it in
//! [`PageError`] and get a small HTML page with the same status.
//!
//! Store errors map to statuses here and only here: a missing run is 404, a
//! full disk 507, a database out of reach or busy 503 with `Retry-After`,
//! anything else 500 — whose detail is logged once and never returned.

use askama::Template;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::ingest::InputError;
use crate::store::StoreError;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A request body that could not be read or was refused (400/413/422).
    #[error("{0}")]
    Input(InputError),
    /// 400 for a bad path, query or header.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("request body is larger than the limit of {0} bytes (after decompression)")]
    PayloadTooLarge(usize),
    /// 415: a body in an encoding or type this endpoint does not take.
    #[error("{message}")]
    UnsupportedMedia {
        field: Option<String>,
        message: String,
    },
    /// 408: the client was too slow.
    #[error("the request took too long")]
    Timeout,
    /// 405 for a path that exists with another method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 507: nothing was stored because the database is full.
    #[error("the database is full")]
    Full(String),
    /// 503: the database cannot be reached or is busy.
    #[error("the database is unavailable")]
    Unavailable(String),
    /// 503: this process has no room for the request now (a bounded
    /// resource, such as the live pages' streams, is all taken).
    #[error("{message}")]
    Busy { code: &'static str, message: String },
    /// A page template failed to render.
    #[error("template failed: {0}")]
    Template(#[from] askama::Error),
    /// Anything else: logged once, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn bad_request(
        code: &'static str,
        field: impl Into<Option<String>>,
        message: impl Into<String>,
    ) -> Self {
        AppError::BadRequest {
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Input(e) if e.malformed => StatusCode::BAD_REQUEST,
            AppError::Input(e) if e.too_large => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Input(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMedia { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Timeout => StatusCode::REQUEST_TIMEOUT,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
            AppError::Unavailable(_) | AppError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Template(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `(code, message, field, line)` as the client sees them.
    fn parts(self) -> (&'static str, String, Option<String>, Option<usize>) {
        match self {
            AppError::Input(e) => (e.code, e.message, e.field, e.line),
            AppError::BadRequest {
                code,
                field,
                message,
            } => (code, message, field, None),
            AppError::NotFound(m) => ("not_found", m, None, None),
            AppError::Unauthorized(m) => ("unauthorized", m, None, None),
            AppError::Forbidden(m) => ("forbidden", m, None, None),
            e @ AppError::PayloadTooLarge(_) => ("payload_too_large", e.to_string(), None, None),
            AppError::UnsupportedMedia { field, message } => {
                ("unsupported_media_type", message, field, None)
            }
            AppError::Timeout => (
                "timeout",
                "the request was not received or answered in time; nothing from it was stored"
                    .into(),
                None,
                None,
            ),
            AppError::MethodNotAllowed => (
                "method_not_allowed",
                "this path does not take that method".into(),
                None,
                None,
            ),
            AppError::Full(detail) => {
                tracing::error!(error = %detail, "database full: refusing writes");
                (
                    "database_full",
                    "the database is full (disk or size limit); nothing from this request was stored — \
                     free space and retry"
                        .into(),
                    None,
                    None,
                )
            }
            AppError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                (
                    "database_unavailable",
                    format!(
                        "the database is unavailable; nothing from this request was stored — retry in {RETRY_AFTER_SECS} s"
                    ),
                    None,
                    None,
                )
            }
            AppError::Busy { code, message } => (code, message, None, None),
            AppError::Template(e) => {
                tracing::error!(error = %e, "template failed");
                ("internal", "internal error".into(), None, None)
            }
            AppError::Internal(detail) => {
                // The detail stays in the log; the client learns only that it failed.
                tracing::error!(error = %detail, "internal error");
                (
                    "internal",
                    "internal error; nothing from this request was stored".into(),
                    None,
                    None,
                )
            }
        }
    }
}

impl From<InputError> for AppError {
    fn from(e: InputError) -> Self {
        AppError::Input(e)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RunNotFound => AppError::NotFound("run not found".into()),
            StoreError::Full(d) => AppError::Full(d),
            StoreError::Unavailable(d) => AppError::Unavailable(d),
            StoreError::TooLarge { field, message } => {
                AppError::Input(crate::ingest::InputError::too_large(field, message))
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

fn with_retry_after(status: StatusCode, mut resp: Response) -> Response {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (code, message, field, line) = self.parts();
        let mut error = json!({ "code": code, "message": message, "field": field });
        if let Some(line) = line {
            error["line"] = json!(line);
        }
        with_retry_after(
            status,
            (status, Json(json!({ "error": error }))).into_response(),
        )
    }
}

/// An error as a small HTML page, for the pages.
pub struct PageError(pub AppError);

impl<E: Into<AppError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = match self.0 {
            AppError::NotFound(m) => m,
            AppError::BadRequest { message, .. } => message,
            other if status.is_server_error() => {
                // Logs the detail once; the page says only what to do.
                let (_, message, _, _) = other.parts();
                if status == StatusCode::INTERNAL_SERVER_ERROR {
                    "something went wrong; see the server log".to_string()
                } else {
                    message
                }
            }
            other => other.to_string(),
        };
        let page = ErrorPage {
            status: status.as_u16(),
            message,
        };
        let html = page.render().unwrap_or_else(|_| format!("{status}"));
        with_retry_after(status, (status, Html(html)).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_at_one_boundary() {
        let status = |e: StoreError| AppError::from(e).status();
        assert_eq!(status(StoreError::RunNotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status(StoreError::Full("x".into())),
            StatusCode::INSUFFICIENT_STORAGE
        );
        assert_eq!(
            status(StoreError::Unavailable("x".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(StoreError::Corrupt("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let too_large = AppError::from(StoreError::TooLarge {
            field: "key".into(),
            message: "keys in a run: 4 is over the limit of 3 (max_keys_per_run)".into(),
        });
        assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let (code, message, field, _) = too_large.parts();
        assert_eq!((code, field.as_deref()), ("too_large", Some("key")));
        assert!(message.contains("max_keys_per_run"), "{message}");
    }

    #[test]
    fn unavailable_says_when_to_retry_and_internal_hides_detail() {
        let resp = AppError::Unavailable("connection refused to 10.0.0.7".into()).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        let resp = AppError::Internal("secret detail".into()).into_response();
        let body = futures_body(resp);
        assert!(!body.contains("secret"), "{body}");
        assert!(body.contains("\"code\":\"internal\""), "{body}");
    }

    fn futures_body(resp: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        })
    }
}
