//! TensorBoard event files, read for `trainlens import-tb` (pure: bytes in,
//! records out; no database, no HTTP):
//!
//! - [`framing`]: the TFRecord container, CRC32C-checked, resumable at any
//!   record boundary;
//! - [`proto`]: the few protobuf messages read, hand-written for prost;
//! - [`mapping`]: events → the record format (scalars, histograms, images,
//!   hyperparameters as config).
//!
//! TensorBoard treats any file whose name contains `tfevents` as an event
//! file, and each directory holding some as one run.

pub mod framing;
pub mod mapping;
pub mod proto;

/// TensorBoard's rule: a file whose name contains `tfevents`.
pub fn is_event_file(name: &str) -> bool {
    name.contains("tfevents")
}
