//! trainlens: stores deep-learning training metrics and tells you why a run
//! is sick. The module map is in the README's Layout section.

pub mod alerts;
pub mod api;
pub mod app;
pub mod charts;
pub mod cli;
pub mod compare;
pub mod csv_export;
pub mod diagnostics;
pub mod http;
pub mod ingest;
pub mod mlflow;
pub mod model;
pub mod record;
pub mod runner;
pub mod store;
pub mod tensorboard;
pub mod web;

/// A builder for outgoing HTTP clients. reqwest is built without a TLS
/// crypto provider of its own (the default one needs aws-lc); this installs
/// rustls' ring provider first.
pub fn http_client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
