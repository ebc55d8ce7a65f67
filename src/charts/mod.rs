//! Pure chart code: downsampling, line charts, layer heatmaps and
//! histogram distributions, as SVG. No I/O.

pub mod distributions;
pub mod downsample;
pub mod heatmap;
pub mod layers;
pub mod sparkline;
pub mod svg;
