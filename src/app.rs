//! The application: the router with its middleware, and serving (the
//! accept loop with its connection bounds, the background tasks, shutdown).
//! The state handlers share is [`crate::http::AppState`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::http::{AppError, AppState, BodyLimit};

/// Default request body limit (after decompression).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::http::metrics::page))
        .merge(crate::api::v1::router())
        .merge(crate::api::findings::router())
        .merge(crate::mlflow::router())
        .merge(crate::web::router())
        .fallback(|| async { AppError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        // Bodies are decompressed by `http::Body` (every gzip member, with
        // the limit applied after inflating).
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(120),
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::metrics::track,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

/// Liveness: 200 while the process serves, whatever the database does.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 when the database answers, 503 naming it otherwise.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            let body = json!({ "error": {
                "code": "database_unavailable",
                "message": format!("{} does not answer", state.database),
                "field": null,
            }});
            let mut resp = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                crate::http::error::RETRY_AFTER_SECS.into(),
            );
            resp
        }
    }
}

/// Gives the empty answers of the middleware (408 from the timeout, 500
/// from a caught panic) the JSON error body every other error has.
async fn json_errors(resp: Response) -> Response {
    let empty = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none();
    match resp.status() {
        StatusCode::REQUEST_TIMEOUT if empty => AppError::Timeout.into_response(),
        StatusCode::INTERNAL_SERVER_ERROR if empty => {
            AppError::Internal("a handler panicked".into()).into_response()
        }
        _ => resp,
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
///
/// Each connection must send a request's headers within
/// [`ConnLimits::header_read_timeout`] — which also closes a keep-alive
/// connection idle for that long — and at most
/// [`ConnLimits::max_connections`] are served at once (more wait in the
/// listen backlog), so slow or idle clients cannot use up the process's file
/// descriptors.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let limits = state.conn;
    // Event streams never end by themselves: this ends them when the
    // server stops, so that the graceful shutdown does not wait on them.
    let mut state = state;
    let streams_stop = state.live.stop.child_token();
    state.live.stop = streams_stop.clone();
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset
                    // before accept: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            |req: axum::http::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
        ));
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper times the headers from their first byte: a client that
            // connects and says nothing is timed here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return drop(slot),
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    streams_stop.cancel();
    graceful.shutdown().await;
    Ok(())
}

/// Serves like [`serve`], with the diagnostics runner and the webhook
/// sender in the background; they finish their current work and stop after
/// the last request.
pub async fn serve_with_background(
    listener: TcpListener,
    state: AppState,
    runner: crate::runner::RunnerConfig,
    sender: crate::alerts::sender::SenderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use crate::alerts::sender::Sender;
    use crate::runner::Runner;
    let cancel = tokio_util::sync::CancellationToken::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let tasks = [
        tokio::spawn(Runner::new(state.store.clone(), runner, wake.clone()).run(cancel.clone())),
        tokio::spawn(Sender::new(state.store.clone(), sender, wake).run(cancel.clone())),
    ];
    let served = serve(listener, state, shutdown).await;
    cancel.cancel();
    for task in tasks {
        if tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .is_err()
        {
            tracing::warn!("a background task did not stop within 30 s");
        }
    }
    served
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
