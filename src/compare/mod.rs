//! Comparing runs and tuning hyperparameters. Pure: configs and metric
//! values in, tables out; no I/O (the pages are `web/compare.rs`, the reads
//! `store/compare.rs`).
//!
//! - [`config`]: a run's config flattened into parameters (`optimizer.lr`),
//!   and the diff of the chosen runs' configs (what differs between them);
//! - [`relation`]: how strongly each parameter relates to a metric across a
//!   project's runs — Spearman's rank correlation ρ for numbers, the rank
//!   correlation ratio η (Kruskal–Wallis on the metric's ranks) for strings,
//!   booleans and lists — so that both read on the same 0..1 scale of
//!   strength and sort together;
//! - [`metric`]: the metric runs are ranked by (a key's lowest, highest or
//!   last value) and which end of it is good;
//! - [`tune`]: a project's hyperparameter view shaped — the runs with the
//!   metric, the relations, the parallel coordinates' axes and lines.

pub mod config;
pub mod metric;
pub mod relation;
pub mod tune;
