//! The HTTP API.

pub mod error;
pub mod findings;
pub mod v1;
