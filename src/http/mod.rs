//! The HTTP home shared by `api/` and `web/`: the state handlers reach
//! ([`state`]), the extractors every handler uses ([`extract`]) and the one
//! error type ([`error`]) with its JSON and HTML renderings. `api/` and `web/` are siblings that depend on this, not
//! on each other; store errors become HTTP statuses here, at one boundary.

pub mod error;
pub mod extract;
pub mod metrics;
pub mod state;

pub use error::{AppError, PageError};
pub use extract::{Admin, AdminToken, Body, BodyLimit, JsonBody, PageRunId, Query, RunId};
pub use state::{AppState, ConnLimits, Live};
