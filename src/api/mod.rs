//! The JSON/NDJSON API: `v1` (runs, ingest, reads, export) and `findings`
//! (findings and the operator's webhook endpoints). Extractors and the error
//! type come from `crate::http`.

pub mod findings;
pub mod v1;
