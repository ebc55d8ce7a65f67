//! The service's own Prometheus metrics (`GET /metrics`, in the OpenMetrics
//! text format that Prometheus scrapes):
//! requests by route and status with latency histograms, counted by a
//! middleware; points and records written, the diagnosis queue (runs whose
//! data is newer than their diagnosis, and how long the oldest has waited),
//! webhook deliveries by state and the database pool, read from the store
//! when scraped. The queue and outbox figures are the database's, so every
//! replica reports the same; request figures are this process's.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{AppError, AppState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Registers `metric` under `name` and returns it (a handle to the same
/// values).
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The registry and the metrics updated as requests and scrapes happen.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    points: Counter,
    records: Counter,
    queue_runs: Gauge,
    queue_lag: Gauge<f64, AtomicU64>,
    deliveries: Family<StateLabels, Gauge>,
    pool_size: Gauge,
    pool_idle: Gauge,
    /// One scrape updates the mirrored figures at a time.
    scraping: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("trainlens");
        Metrics {
            requests: registered(
                &mut r,
                "http_requests",
                "HTTP requests answered, by method, route and status",
                Family::default(),
            ),
            latency: registered(
                &mut r,
                "http_request_duration_seconds",
                "Time to answer an HTTP request (to the first byte of a streamed body)",
                Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ),
            points: registered(
                &mut r,
                "points_written",
                "Scalar points committed by this process (API, MLflow, imports)",
                Counter::default(),
            ),
            records: registered(
                &mut r,
                "records_written",
                "Records committed by this process (points, histograms, images, … and end lines)",
                Counter::default(),
            ),
            queue_runs: registered(
                &mut r,
                "diagnosis_queue_runs",
                "Runs whose data is newer than their diagnosis",
                Gauge::default(),
            ),
            queue_lag: registered(
                &mut r,
                "diagnosis_lag_seconds",
                "How long the longest-waiting run's newest data has gone undiagnosed (0: none waits)",
                Gauge::default(),
            ),
            deliveries: registered(
                &mut r,
                "webhook_deliveries",
                "Alert deliveries in the outbox, by state (pending, delivered, failed)",
                Family::default(),
            ),
            pool_size: registered(
                &mut r,
                "db_pool_connections",
                "Database connections open",
                Gauge::default(),
            ),
            pool_idle: registered(
                &mut r,
                "db_pool_idle_connections",
                "Database connections open and idle",
                Gauge::default(),
            ),
            registry: r,
            scraping: std::sync::Mutex::new(()),
        }
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The text exposition.
    fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Counts every request under its route pattern (`/api/v1/runs/{id}`: the
/// label set stays bounded), or `unmatched`.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    state.metrics.observe(
        &method,
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// `GET /metrics`.
pub async fn page(State(state): State<AppState>) -> Result<Response, AppError> {
    let m: &Arc<Metrics> = &state.metrics;
    let ops = state.store.ops_stats().await?;
    let _one_at_a_time = m.scraping.lock().unwrap_or_else(|e| e.into_inner());
    let written = state.store.written();
    // Counters only go up: add what was written since the last scrape.
    m.points
        .inc_by(written.points.saturating_sub(m.points.get()));
    m.records
        .inc_by(written.records.saturating_sub(m.records.get()));
    m.queue_runs.set(ops.stale_runs as i64);
    m.queue_lag.set(ops.lag_seconds);
    for (name, n) in [
        ("pending", ops.outbox_pending),
        ("delivered", ops.outbox_delivered),
        ("failed", ops.outbox_failed),
    ] {
        m.deliveries
            .get_or_create(&StateLabels {
                state: name.to_string(),
            })
            .set(n as i64);
    }
    m.pool_size.set(i64::from(ops.pool_size));
    m.pool_idle.set(ops.pool_idle as i64);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response())
}
