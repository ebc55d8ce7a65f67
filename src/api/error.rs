//! The one error type of the HTTP layer: `{"error":{"code","message","field"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::InputError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum AppError {
    /// A request body that could not be read or was refused.
    Input(InputError),
    /// 400 for a bad path, query or header.
    BadRequest {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    NotFound(String),
    Unauthorized(String),
    Forbidden(String),
    PayloadTooLarge(usize),
    Store(StoreError),
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
            other => AppError::Store(other),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message, field, line) = match self {
            AppError::Input(e) => {
                let status = if e.malformed {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                (status, e.code, e.message, e.field, e.line)
            }
            AppError::BadRequest {
                code,
                field,
                message,
            } => (StatusCode::BAD_REQUEST, code, message, field, None),
            AppError::NotFound(message) => {
                (StatusCode::NOT_FOUND, "not_found", message, None, None)
            }
            AppError::Unauthorized(message) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message,
                None,
                None,
            ),
            AppError::Forbidden(message) => {
                (StatusCode::FORBIDDEN, "forbidden", message, None, None)
            }
            AppError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "request body is larger than the limit of {limit} bytes (after decompression)"
                ),
                None,
                None,
            ),
            AppError::Store(e) => {
                // The detail stays in the log; the client learns only that it failed.
                tracing::error!(error = %e, "store error");
                let status = match e {
                    StoreError::Db(sqlx::Error::PoolTimedOut) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                (
                    status,
                    "internal",
                    "internal error; nothing from this request was stored".into(),
                    None,
                    None,
                )
            }
        };
        let mut error = json!({ "code": code, "message": message, "field": field });
        if let Some(line) = line {
            error["line"] = json!(line);
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
}
