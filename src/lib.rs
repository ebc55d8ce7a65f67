//! trainlens: stores deep-learning training metrics and tells you why a run
//! is sick. See `DESIGN.md`-style overview in the README.

pub mod alerts;
pub mod api;
pub mod app;
pub mod charts;
pub mod cli;
pub mod diagnostics;
pub mod ingest;
pub mod record;
pub mod store;
pub mod web;

/// A builder for outgoing HTTP clients. reqwest is built without a TLS
/// crypto provider of its own (the default one needs aws-lc); this installs
/// rustls' ring provider first.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
