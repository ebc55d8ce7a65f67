//! The state every handler reaches ([`AppState`]), built by `app` and the
//! CLI, read by `api/` and `web/`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use uuid::Uuid;

use super::AdminToken;
use crate::ingest::Limits;
use crate::store::Store;

/// Everything a handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// Base URL of the web pages, without a trailing slash.
    pub public_url: Arc<str>,
    pub max_body_bytes: usize,
    /// Bearer token for the operator endpoints (webhooks); `None`: they are off.
    pub admin_token: AdminToken,
    /// Where the database is, for `/readyz` (no password).
    pub database: Arc<str>,
    /// How connections are bounded (see `app::serve`).
    pub conn: ConnLimits,
    /// Size limits on what clients send.
    pub limits: Arc<Limits>,
    /// The service's own metrics (`/metrics`).
    pub metrics: Arc<super::metrics::Metrics>,
    /// The live pages' event streams (`web/live.rs`).
    pub live: Live,
}

/// How the live pages' event streams run.
#[derive(Clone)]
pub struct Live {
    /// How often a stream polls the database.
    pub poll: Duration,
    /// How often an idle stream sends a comment, which keeps proxies from
    /// closing it and finds a client that went away.
    pub keep_alive: Duration,
    /// Streams open at once in this process; each holds a client
    /// connection, so this stays well under [`ConnLimits::max_connections`].
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the server shuts down: every stream ends, so that the
    /// graceful shutdown does not wait on them.
    pub stop: tokio_util::sync::CancellationToken,
}

impl Live {
    /// `max_streams` open at once, polling every `poll`; 0 streams turns
    /// the live pages off (every stream is refused with a 503).
    pub fn new(poll: Duration, keep_alive: Duration, max_streams: usize) -> Live {
        Live {
            poll,
            keep_alive,
            streams: Arc::new(tokio::sync::Semaphore::new(max_streams)),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }
}

/// Default of [`Live::poll`].
pub const LIVE_POLL: Duration = Duration::from_secs(1);
/// Default of [`Live::streams`]: a quarter of the default connections.
pub const LIVE_STREAMS: usize = 128;
/// Default of [`Live::keep_alive`]: under the minute most proxies allow an
/// idle response.
pub const LIVE_KEEP_ALIVE: Duration = Duration::from_secs(15);

impl Default for Live {
    fn default() -> Self {
        Live::new(LIVE_POLL, LIVE_KEEP_ALIVE, LIVE_STREAMS)
    }
}

/// Bounds on client connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A request's headers must arrive within this; also the longest a
    /// keep-alive connection may sit idle.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

impl FromRef<AppState> for AdminToken {
    fn from_ref(state: &AppState) -> AdminToken {
        state.admin_token.clone()
    }
}

impl AppState {
    pub fn new(store: Arc<Store>, public_url: &str, max_body_bytes: usize) -> Self {
        AppState {
            store,
            public_url: public_url.trim_end_matches('/').into(),
            max_body_bytes,
            admin_token: AdminToken(None),
            database: "the database".into(),
            conn: ConnLimits::default(),
            limits: Arc::new(Limits::default()),
            metrics: Arc::new(super::metrics::Metrics::new()),
            live: Live::default(),
        }
    }

    /// How the live pages' event streams run (see [`Live`]).
    pub fn with_live(mut self, live: Live) -> Self {
        self.live = live;
        self
    }

    /// The size limits on what clients send (the store enforces
    /// `max_keys_per_run`, set when it is opened).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(limits);
        self
    }

    pub fn with_admin_token(mut self, token: Option<&str>) -> Self {
        self.admin_token = AdminToken(token.filter(|t| !t.is_empty()).map(Into::into));
        self
    }

    /// Names the database in `/readyz` answers (see `store::describe_database_url`).
    pub fn with_database_name(mut self, name: &str) -> Self {
        self.database = name.into();
        self
    }

    /// The page of a run.
    pub fn run_url(&self, id: Uuid) -> String {
        format!("{}/runs/{id}", self.public_url)
    }
}
