//! Pure detectors over an in-memory view of a run (see DESIGN.md).
