//! Pure chart code: downsampling now, SVG rendering later. No I/O.

pub mod downsample;
pub mod sparkline;
pub mod svg;
