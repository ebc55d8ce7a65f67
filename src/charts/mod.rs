//! Pure chart code: downsampling, line charts (smoothing, step or time
//! axes), layer heatmaps, histogram distributions, weight heatmaps, feature
//! maps, bar charts and parallel coordinates, as SVG (and the PNGs inside
//! them). No I/O.

pub mod axis;
pub mod bars;
pub mod distributions;
pub mod downsample;
pub mod feature_map;
pub mod heatmap;
pub mod layers;
pub mod parallel;
pub mod raster;
pub mod smooth;
pub mod sparkline;
pub mod svg;
pub mod weights;
