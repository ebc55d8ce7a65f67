//! Extractors: every rejection is an [`AppError`], so a bad body, query,
//! path or token gets the same JSON error as any other mistake.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use uuid::Uuid;

use super::error::{AppError, PageError};
use crate::ingest;

/// The configured body limit (after decompression), put in request
/// extensions by the router.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// Bodies above this many compressed bytes are inflated on a blocking thread.
const INLINE_INFLATE_BYTES: usize = 64 * 1024;

/// The raw request body, decompressed: `Content-Encoding: gzip` (every
/// member of a multi-member file, as `gzip.open(..., "a")` writes) or none.
/// Over the limit — before or after inflating — it is a 413; another
/// encoding is a 415.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(usize::MAX, |l| l.0);
        let gzip = content_encoding(req.headers())?;
        let raw = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(AppError::PayloadTooLarge(limit));
            }
            Err(e) => {
                return Err(AppError::bad_request(
                    "unreadable_body",
                    None,
                    e.body_text(),
                ));
            }
        };
        if !gzip {
            return Ok(Body(raw));
        }
        let inflated = if raw.len() <= INLINE_INFLATE_BYTES {
            gunzip(&raw, limit)
        } else {
            tokio::task::spawn_blocking(move || gunzip(&raw, limit))
                .await
                .map_err(|e| AppError::Internal(format!("inflating a body: {e}")))?
        };
        inflated.map(Body)
    }
}

/// Whether the body is gzip; refuses encodings trainlens does not read.
fn content_encoding(headers: &HeaderMap) -> Result<bool, AppError> {
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let v = value.to_str().unwrap_or("");
        for coding in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match coding.to_ascii_lowercase().as_str() {
                "identity" => {}
                "gzip" | "x-gzip" if !gzip => gzip = true,
                other => {
                    return Err(AppError::UnsupportedMedia {
                        field: Some("Content-Encoding".into()),
                        message: format!(
                            "Content-Encoding {other:?} is not supported: send gzip or an uncompressed body"
                        ),
                    });
                }
            }
        }
    }
    Ok(gzip)
}

/// Inflates every gzip member of `raw`, at most `limit` bytes.
pub fn gunzip(raw: &[u8], limit: usize) -> Result<Bytes, AppError> {
    let mut out = Vec::new();
    let decoder = flate2::read::MultiGzDecoder::new(raw);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            AppError::bad_request(
                "invalid_gzip",
                "Content-Encoding".to_string(),
                format!("the gzip body does not inflate: {e}"),
            )
        })?;
    if out.len() > limit {
        return Err(AppError::PayloadTooLarge(limit));
    }
    Ok(Bytes::from(out))
}

/// A JSON body parsed with the failing field named.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let Body(bytes) = Body::from_request(req, state).await?;
        Ok(JsonBody(ingest::parse_json(&bytes)?))
    }
}

/// Query parameters, with a 400 in the app's format when they do not parse
/// and a 422 for a NUL character (no database stores one in text).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let q = parts.uri.query().unwrap_or("");
        if let Some((name, _)) =
            form_urlencoded::parse(q.as_bytes()).find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ingest::InputError::invalid(
                name.into_owned(),
                "query parameters may not contain a NUL character",
            )
            .into());
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                AppError::bad_request(
                    "invalid_query",
                    (path != ".").then_some(path),
                    e.into_inner().to_string(),
                )
            })
    }
}

/// A query parameter that is one of an enum's words (a run status, a
/// severity, …): 400 naming the field and the allowed words otherwise.
pub fn query_word<T>(field: &str, value: &str) -> Result<T, AppError>
where
    T: std::str::FromStr<Err = crate::model::ParseWordError>,
{
    value.parse().map_err(|e: crate::model::ParseWordError| {
        AppError::bad_request("invalid_query", field.to_string(), e.to_string())
    })
}

/// The `{id}` of a run path, as a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId(pub Uuid);

impl RunId {
    pub fn parse(raw: &str) -> Result<RunId, AppError> {
        Uuid::parse_str(raw).map(RunId).map_err(|_| {
            AppError::bad_request(
                "invalid_id",
                "id".to_string(),
                format!("{raw:?} is not a run id (a UUID)"),
            )
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::bad_request("invalid_path", None, e.body_text()))?;
        RunId::parse(&raw)
    }
}

/// [`RunId`] for a page: a bad id is an error page (see [`PageError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRunId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PageRunId {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        let RunId(id) = RunId::from_request_parts(parts, state).await?;
        Ok(PageRunId(id))
    }
}

/// The operator token (`TRAINLENS_ADMIN_TOKEN`); `None`: operator endpoints are off.
#[derive(Clone, Debug, Default)]
pub struct AdminToken(pub Option<std::sync::Arc<str>>);

/// A request made with the operator token (`Authorization: Bearer …`).
/// 403 when no token is configured, 401 for a missing or wrong one.
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    AdminToken: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let AdminToken(Some(token)) = AdminToken::from_ref(state) else {
            return Err(AppError::Forbidden(
                "the webhook API is off: start the server with TRAINLENS_ADMIN_TOKEN set, or use `trainlens webhook`".into(),
            ));
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            Ok(Admin)
        } else {
            Err(AppError::Unauthorized(
                "send `Authorization: Bearer <admin token>`".into(),
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Idempotency-Key` header, when sent: 1 to 256 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        AppError::bad_request(
            "invalid_header",
            "Idempotency-Key".to_string(),
            "Idempotency-Key must be 1 to 256 visible ASCII characters",
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_gzip_member_is_read() {
        let mut body = gz(b"first\n");
        body.extend(gz(b"second\n"));
        assert_eq!(&gunzip(&body, 1 << 20).unwrap()[..], b"first\nsecond\n");
    }

    #[test]
    fn inflating_past_the_limit_is_413_and_garbage_is_400() {
        let body = gz(&vec![b'x'; 10_000]);
        assert!(matches!(
            gunzip(&body, 9_999),
            Err(AppError::PayloadTooLarge(9_999))
        ));
        assert_eq!(gunzip(&body, 10_000).unwrap().len(), 10_000);
        let mut cut = body.clone();
        cut.truncate(body.len() / 2);
        assert!(matches!(
            gunzip(&cut, 1 << 20),
            Err(AppError::BadRequest { .. })
        ));
    }

    #[test]
    fn other_encodings_are_415() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(matches!(
            content_encoding(&h),
            Err(AppError::UnsupportedMedia { .. })
        ));
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(content_encoding(&h).unwrap());
        assert!(!content_encoding(&HeaderMap::new()).unwrap());
    }
}
