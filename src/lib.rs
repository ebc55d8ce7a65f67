//! trainlens: stores deep-learning training metrics and diagnoses runs.

pub mod diagnostics;
pub mod record;
