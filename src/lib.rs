//! trainlens: stores deep-learning training metrics and tells you why a run
//! is sick. See `DESIGN.md`-style overview in the README.

pub mod api;
pub mod app;
pub mod charts;
pub mod cli;
pub mod diagnostics;
pub mod ingest;
pub mod record;
pub mod store;
