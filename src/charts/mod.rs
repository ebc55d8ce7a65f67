//! Pure chart code: downsampling, line charts (smoothing, step or time
//! axes), layer heatmaps and histogram distributions, as SVG. No I/O.

pub mod axis;
pub mod distributions;
pub mod downsample;
pub mod heatmap;
pub mod layers;
pub mod smooth;
pub mod sparkline;
pub mod svg;
