//! MLflow's error body, `{"error_code": "...", "message": "..."}`, with
//! MLflow's HTTP statuses. Validation errors are 4xx: the MLflow client
//! retries 408, 429 and 5xx (but 501 and 507) for minutes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct MlflowError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl MlflowError {
    pub fn invalid(message: impl Into<String>) -> Self {
        MlflowError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER_VALUE",
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        MlflowError {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        MlflowError {
            status: StatusCode::NOT_FOUND,
            code: "RESOURCE_DOES_NOT_EXIST",
            message: message.into(),
        }
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        MlflowError {
            status: StatusCode::BAD_REQUEST,
            code: "RESOURCE_ALREADY_EXISTS",
            message: message.into(),
        }
    }

    pub fn endpoint_not_found(path: &str) -> Self {
        MlflowError {
            status: StatusCode::NOT_FOUND,
            code: "ENDPOINT_NOT_FOUND",
            message: format!("trainlens does not implement the MLflow endpoint {path}"),
        }
    }

    /// Artifacts: 501, which the client does not retry.
    pub fn no_artifacts() -> Self {
        MlflowError {
            status: StatusCode::NOT_IMPLEMENTED,
            code: "NOT_IMPLEMENTED",
            message: "trainlens stores metrics, params and tags, not artifacts: \
                      this artifact was not stored (log artifacts elsewhere, e.g. a file store)"
                .into(),
        }
    }
}

impl From<StoreError> for MlflowError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RunNotFound => MlflowError::not_found("Run not found"),
            StoreError::TooLarge { message, .. } => MlflowError::invalid(message),
            StoreError::Full(detail) => {
                tracing::error!(error = %detail, "database full: refusing writes");
                MlflowError {
                    // Not retried by the client: the disk must be freed first.
                    status: StatusCode::INSUFFICIENT_STORAGE,
                    code: "RESOURCE_EXHAUSTED",
                    message: "the database is full; nothing from this request was stored".into(),
                }
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                MlflowError {
                    // Retried by the client, which is right here.
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "TEMPORARILY_UNAVAILABLE",
                    message: "the database is unavailable; nothing from this request was stored"
                        .into(),
                }
            }
            other => {
                tracing::error!(error = %other, "internal error");
                MlflowError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "INTERNAL_ERROR",
                    message: "internal error; nothing from this request was stored".into(),
                }
            }
        }
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "error_code": self.code, "message": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(crate::http::error::RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_mlflow_codes() {
        let e = MlflowError::from(StoreError::RunNotFound);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST")
        );
        let e = MlflowError::from(StoreError::TooLarge {
            field: "key".into(),
            message: "keys in a run".into(),
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
        );
        let e = MlflowError::from(StoreError::Unavailable("x".into()));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e = MlflowError::from(StoreError::Corrupt("secret".into()));
        assert_eq!(e.code, "INTERNAL_ERROR");
        assert!(!e.message.contains("secret"));
        // Not in the client's retry list (408, 429, 500, 502, 503, 504).
        assert_eq!(MlflowError::no_artifacts().status.as_u16(), 501);
    }
}
