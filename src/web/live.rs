//! Live pages: server-sent events that tell an open page its data changed.
//!
//! - `GET /runs/{id}/events`: an event `run` whenever the run's data,
//!   status or diagnosis changes, then `end` once it has stopped running
//!   and its last diagnosis is saved (or [`SETTLE_POLLS`] polls later).
//! - `GET /events/runs[?project=NAME]`: an event `runs` whenever a run of
//!   the project (of any project without one) changes — data, status, name
//!   or findings, so the runs table's rows.
//!
//! Both are fed from the store, never from this process's memory: each poll
//! ([`crate::http::Live::poll`], ~1 s) is one small indexed read
//! (`store/live.rs`), so a point written through any replica reaches a
//! stream opened on any other. Events are small JSON; the page's script
//! (`static/live.js`) then fetches the page again and swaps the parts that
//! show the data, by id. Without JavaScript the pages are as they were.
//!
//! A page hands its stream what it showed — a run's [`run_token`], the
//! table's render time — as `seen`/`since` (and a reconnecting browser
//! sends the last event's id as `Last-Event-ID`), so a change between the
//! page's reads and the stream's first poll is not missed.
//!
//! Streams are bounded: at most [`crate::http::Live::streams`] at once (a
//! 503 past that, so ordinary requests keep their connections), a
//! keep-alive comment every [`crate::http::Live::keep_alive`] (a client that
//! went away is found at the next write), polls read through the store's
//! own small pool for them ([`crate::store::live::READERS`] connections, so
//! open pages never take a connection a request needs), and every stream
//! ends when the server shuts down ([`crate::http::Live::stop`]).
//!
//! The decisions — when a run's stream sends and ends, which runs are news
//! to a table — are the pure [`RunWatch`] and [`TableWatch`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::http::{AppError, AppState, Query, RunId};
use crate::model::RunStatus;
use crate::store::Store;
use crate::store::live::RunPulse;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/events", get(run_events))
        .route("/events/runs", get(table_events))
        .route(
            "/static/live.js",
            super::asset("text/javascript", include_str!("../../static/live.js")),
        )
}

/// Polls a stream waits, after its run stopped running, for the diagnosis
/// of its last data before it ends anyway (no runner may be running).
pub const SETTLE_POLLS: u32 = 60;
/// Seconds back a table's stream looks for changed runs: longer than any
/// write transaction takes to commit after stamping `changed_at`, and than
/// the clocks of two replicas differ.
pub const WINDOW_SECS: f64 = 60.0;
/// Seconds before a page's render time that still count as news to it: its
/// reads may have missed a write stamped a little earlier (another
/// replica's clock, a commit in flight). At worst one extra refresh.
pub const SKEW_SECS: f64 = 2.0;

/// What identifies the state of a run's page: its data version, diagnosis
/// version and status (the open findings change only with the diagnosis).
pub fn run_token(p: &RunPulse) -> String {
    format!(
        "{}.{}.{}",
        p.data_version,
        p.diagnosed_version,
        p.status.as_str()
    )
}

/// The data of a run's events.
pub fn run_event_data(p: &RunPulse) -> serde_json::Value {
    json!({
        "version": p.data_version,
        "diagnosis": p.diagnosed_version,
        "findings": p.open_findings,
        "status": p.status.as_str(),
    })
}

/// What a run's stream does after a poll.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStep {
    /// Nothing new.
    Quiet,
    /// Send this state (token, data).
    Send(String, serde_json::Value),
    /// Send this state if it is new, then end.
    End(Option<(String, serde_json::Value)>),
}

/// When a run's stream sends and when it ends.
#[derive(Debug, Clone)]
pub struct RunWatch {
    /// The token the page shows (or the last event's).
    last: Option<String>,
    /// Polls since the run was first seen not running.
    settling: u32,
}

impl RunWatch {
    /// `seen`: the token of the page the stream is for, if it said.
    pub fn new(seen: Option<String>) -> RunWatch {
        RunWatch {
            last: seen,
            settling: 0,
        }
    }

    pub fn observe(&mut self, pulse: Option<&RunPulse>) -> RunStep {
        let Some(p) = pulse else {
            // Deleted: nothing more will come.
            return RunStep::End(None);
        };
        let token = run_token(p);
        let news = (self.last.as_deref() != Some(token.as_str()))
            .then(|| (token.clone(), run_event_data(p)));
        self.last = Some(token);
        if p.status == RunStatus::Running {
            self.settling = 0;
            return news.map_or(RunStep::Quiet, |(t, d)| RunStep::Send(t, d));
        }
        // Stopped: its last findings are those of the diagnosis of its
        // last data; wait for that (a bounded while).
        self.settling += 1;
        if p.diagnosed_version >= p.data_version || self.settling > SETTLE_POLLS {
            RunStep::End(news)
        } else {
            news.map_or(RunStep::Quiet, |(t, d)| RunStep::Send(t, d))
        }
    }
}

/// Which runs are news to a runs table.
#[derive(Debug, Clone)]
pub struct TableWatch {
    /// The table's render time (unix seconds); `None` after the first poll.
    since: Option<f64>,
    /// The `changed_at` of each run that changed within the window, as
    /// last told.
    seen: HashMap<Uuid, f64>,
}

impl TableWatch {
    pub fn new(since: f64) -> TableWatch {
        TableWatch {
            since: Some(since),
            seen: HashMap::new(),
        }
    }

    /// From when the next poll reads changes, at `now`: the window, or
    /// from just before the page was drawn when that is longer ago.
    pub fn from(&self, now: f64) -> f64 {
        let window = now - WINDOW_SECS;
        self.since.map_or(window, |s| window.min(s - SKEW_SECS))
    }

    /// Takes a poll's changed runs (with their `changed_at`); how many are
    /// news: changed since the page was drawn, or since the last poll.
    pub fn observe(&mut self, changed: &[(Uuid, f64)]) -> usize {
        let news = match self.since.take() {
            Some(since) => changed
                .iter()
                .filter(|(_, at)| *at > since - SKEW_SECS)
                .count(),
            None => changed
                .iter()
                .filter(|(id, at)| self.seen.get(id) != Some(at))
                .count(),
        };
        // Runs that left the window are forgotten; they come back only
        // with a new change.
        self.seen = changed.iter().copied().collect();
        news
    }
}

/// The events URL of a run's page when it is worth streaming (the run is
/// running), with what the page shows; `None` otherwise.
pub async fn run_events_url(store: &Store, run: Uuid) -> Result<Option<String>, AppError> {
    Ok(store
        .run_pulse(run)
        .await?
        .filter(|p| p.status == RunStatus::Running)
        .map(|p| format!("/runs/{run}/events?seen={}", run_token(&p))))
}

/// The events URL of a runs table of `project` (of every project: `None`)
/// drawn from reads started at `since`.
pub fn table_events_url(project: Option<&str>, since: f64) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(p) = project {
        q.append_pair("project", p);
    }
    q.append_pair("since", &format!("{since:.3}"));
    format!("/events/runs?{}", q.finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunEventsQuery {
    seen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEventsQuery {
    project: Option<String>,
    since: Option<String>,
}

/// The id of the last event a reconnecting `EventSource` got.
fn last_event_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// A stream's slot, or 503 when every slot is taken.
fn slot(state: &AppState) -> Result<OwnedSemaphorePermit, AppError> {
    state
        .live
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::Busy {
            code: "too_many_streams",
            message: "every live stream of this server is taken; the page works without one \
                      (reload it for new data)"
                .into(),
        })
}

async fn run_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunEventsQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let RunId(id) = RunId::parse(&id)?;
    if state.store.run_pulse(id).await?.is_none() {
        return Err(AppError::NotFound(format!("no run {id}")));
    }
    let permit = slot(&state)?;
    let watch = RunWatch::new(last_event_id(&headers).or(q.seen));
    let store = state.store.clone();
    let poll = Poller::new(&state, permit);
    let events = poll.stream(watch, move |mut watch: RunWatch| {
        let store = store.clone();
        async move {
            let pulse = match store.run_pulse(id).await {
                Ok(p) => p,
                Err(e) => return (watch, Err(e)),
            };
            let polled = match watch.observe(pulse.as_ref()) {
                RunStep::Quiet => (vec![], false),
                RunStep::Send(token, data) => (vec![event("run", &token, &data)], false),
                RunStep::End(news) => {
                    let mut out: Vec<Event> = news
                        .iter()
                        .map(|(token, data)| event("run", token, data))
                        .collect();
                    let data = pulse.as_ref().map_or(json!({}), run_event_data);
                    out.push(Event::default().event("end").data(data.to_string()));
                    (out, true)
                }
            };
            (watch, Ok(polled))
        }
    });
    Ok(sse(&state, events))
}

async fn table_events(
    State(state): State<AppState>,
    Query(q): Query<TableEventsQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let since = match last_event_id(&headers).or(q.since) {
        None => crate::store::now(),
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite())
            .ok_or_else(|| AppError::BadRequest {
                code: "invalid_query",
                field: Some("since".into()),
                message: format!("since {s:?} is not a unix time"),
            })?,
    };
    let project: Option<Arc<str>> = q.project.filter(|p| !p.is_empty()).map(Into::into);
    let permit = slot(&state)?;
    let store = state.store.clone();
    let poll = Poller::new(&state, permit);
    let events = poll.stream(TableWatch::new(since), move |mut watch: TableWatch| {
        let store = store.clone();
        let project = project.clone();
        async move {
            let now = crate::store::now();
            let changed = match store
                .changed_runs(project.as_deref(), watch.from(now))
                .await
            {
                Ok(c) => c,
                Err(e) => return (watch, Err(e)),
            };
            let news = watch.observe(&changed);
            let out = if news > 0 {
                // The id is a `since` for a reconnect.
                let id = format!("{now:.3}");
                vec![event("runs", &id, &json!({ "changed": news }))]
            } else {
                vec![]
            };
            (watch, Ok((out, false)))
        }
    });
    Ok(sse(&state, events))
}

fn event(name: &str, id: &str, data: &serde_json::Value) -> Event {
    Event::default().event(name).id(id).data(data.to_string())
}

fn sse(
    state: &AppState,
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.live.keep_alive))
        .into_response();
    // Proxies (nginx) must pass events on as they come.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// The loop every stream runs: poll now, then every `interval`, until the
/// poll says it is done or the server stops; holds the stream's slot.
struct Poller {
    interval: Duration,
    stop: CancellationToken,
    /// The stream's slot (see [`crate::http::Live::streams`]).
    permit: OwnedSemaphorePermit,
}

/// Events to send, and whether the stream ends after them.
type Polled = (Vec<Event>, bool);

impl Poller {
    fn new(state: &AppState, permit: OwnedSemaphorePermit) -> Poller {
        Poller {
            interval: state.live.poll,
            stop: state.live.stop.clone(),
            permit,
        }
    }

    fn stream<W, F, Fut>(
        self,
        watch: W,
        poll: F,
    ) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static
    where
        W: Send + 'static,
        F: Fn(W) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (W, Result<Polled, crate::store::StoreError>)> + Send,
    {
        struct S<W, F> {
            p: Poller,
            /// `None` only while a poll has it.
            watch: Option<W>,
            poll: F,
            queued: std::collections::VecDeque<Event>,
            first: bool,
            done: bool,
        }
        let s = S {
            p: self,
            watch: Some(watch),
            poll,
            queued: Default::default(),
            first: true,
            done: false,
        };
        futures_util::stream::unfold(s, |mut s| async move {
            loop {
                if let Some(e) = s.queued.pop_front() {
                    return Some((Ok(e), s));
                }
                if s.done || s.p.stop.is_cancelled() {
                    drop(s.p.permit);
                    return None;
                }
                if !s.first {
                    tokio::select! {
                        _ = s.p.stop.cancelled() => continue,
                        _ = tokio::time::sleep(s.p.interval) => {}
                    }
                }
                s.first = false;
                let watch = s.watch.take().expect("the watch is back after each poll");
                let (watch, polled) = (s.poll)(watch).await;
                s.watch = Some(watch);
                match polled {
                    Ok((events, done)) => {
                        s.queued.extend(events);
                        s.done = done;
                    }
                    // The database is away for a moment: the next poll
                    // tries again, and the page stays as it is meanwhile.
                    Err(e) => tracing::debug!(error = %e, "live stream poll failed"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulse(data: i64, diag: i64, status: RunStatus) -> RunPulse {
        RunPulse {
            data_version: data,
            diagnosed_version: diag,
            status,
            open_findings: 1,
        }
    }

    #[test]
    fn a_run_stream_sends_what_is_new_to_the_page() {
        let p = pulse(3, 2, RunStatus::Running);
        let mut w = RunWatch::new(Some(run_token(&p)));
        assert_eq!(w.observe(Some(&p)), RunStep::Quiet, "the page shows it");
        let q = pulse(4, 2, RunStatus::Running);
        assert_eq!(
            w.observe(Some(&q)),
            RunStep::Send(
                "4.2.running".into(),
                json!({"version": 4, "diagnosis": 2, "findings": 1, "status": "running"})
            )
        );
        assert_eq!(w.observe(Some(&q)), RunStep::Quiet);
        // A new diagnosis (findings) is news too.
        assert!(matches!(
            w.observe(Some(&pulse(4, 4, RunStatus::Running))),
            RunStep::Send(..)
        ));
        // Without a token from the page, the first poll tells.
        assert!(matches!(
            RunWatch::new(None).observe(Some(&q)),
            RunStep::Send(..)
        ));
        assert_eq!(RunWatch::new(None).observe(None), RunStep::End(None));
    }

    #[test]
    fn a_run_stream_ends_after_the_last_diagnosis_or_a_while() {
        let mut w = RunWatch::new(Some("4.4.running".into()));
        // Finished, its last data not diagnosed yet: tell, keep going.
        assert!(matches!(
            w.observe(Some(&pulse(5, 4, RunStatus::Finished))),
            RunStep::Send(..)
        ));
        assert_eq!(
            w.observe(Some(&pulse(5, 4, RunStatus::Finished))),
            RunStep::Quiet
        );
        // Diagnosed: tell, then end.
        assert!(matches!(
            w.observe(Some(&pulse(5, 5, RunStatus::Finished))),
            RunStep::End(Some(_))
        ));
        // Nobody diagnoses: it ends anyway.
        let mut w = RunWatch::new(None);
        let stuck = pulse(5, 4, RunStatus::Crashed);
        let steps: Vec<RunStep> = (0..=SETTLE_POLLS)
            .map(|_| w.observe(Some(&stuck)))
            .collect();
        assert!(matches!(steps[0], RunStep::Send(..)));
        assert!(
            steps[1..steps.len() - 1]
                .iter()
                .all(|s| *s == RunStep::Quiet)
        );
        assert_eq!(steps.last(), Some(&RunStep::End(None)));
        // A run stopped and caught up ends at once, telling nothing new.
        let done = pulse(5, 5, RunStatus::Finished);
        let mut w = RunWatch::new(Some(run_token(&done)));
        assert_eq!(w.observe(Some(&done)), RunStep::End(None));
    }

    #[test]
    fn a_table_stream_tells_changes_after_the_page_and_each_once() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut w = TableWatch::new(1000.0);
        // The first poll reads from just before the page (or the window).
        assert_eq!(w.from(1001.0), 1001.0 - WINDOW_SECS);
        assert_eq!(w.from(2000.0), 1000.0 - SKEW_SECS);
        // `a` changed well before the page was drawn; `b` just before.
        assert_eq!(w.observe(&[(b, 999.5), (a, 990.0)]), 1);
        assert_eq!(w.from(1001.0), 1001.0 - WINDOW_SECS);
        assert_eq!(w.observe(&[(b, 999.5), (a, 990.0)]), 0, "told once");
        assert_eq!(w.observe(&[(a, 1002.0), (b, 999.5)]), 1);
        // `b` leaves the window: no news; it comes back with a change.
        assert_eq!(w.observe(&[(a, 1002.0)]), 0);
        assert_eq!(w.observe(&[(b, 1003.0), (a, 1002.0)]), 1);
    }

    #[test]
    fn table_urls_escape_the_project() {
        assert_eq!(
            table_events_url(Some("a b&c"), 12.5),
            "/events/runs?project=a+b%26c&since=12.500"
        );
        assert_eq!(table_events_url(None, 1.0), "/events/runs?since=1.000");
    }
}
