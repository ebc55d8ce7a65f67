//! The HTTP API.

pub mod error;
pub mod v1;
