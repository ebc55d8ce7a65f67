//! Compressed chunks of one scalar series.
//!
//! A series is stored as one row per step range of [`CHUNK_STEPS`] steps, not
//! one row per point: a per-point row costs ~40 bytes of SQLite overhead and
//! one B-tree insert, a chunk costs ~1 byte per step and ~2–8 per value.
//!
//! Layout of a chunk blob: one version byte, then a zstd frame of
//! - `n` (varint), flags (bit 0: times present);
//! - steps: the first as a varint, then the gaps (≥ 1) as varints;
//! - values: each `f64`'s bits XOR the previous one's, byte-shuffled (all
//!   first bytes, then all second bytes, …) so that the bytes that rarely
//!   change line up for zstd;
//! - times (when any point has one): zigzag varint deltas of the `f64` bit
//!   patterns; a missing time is the canonical NaN pattern.
//!
//! Every step is exact and every value and time keeps its bits, so NaN,
//! ±Infinity and `-0.0` come back as they were sent.

use thiserror::Error;

pub use crate::model::Point;

/// log2 of the number of steps one chunk covers.
pub const CHUNK_SHIFT: u32 = 12;
/// Steps per chunk.
pub const CHUNK_STEPS: u64 = 1 << CHUNK_SHIFT;

const VERSION: u8 = 1;
const FLAG_TIMES: u8 = 1;
const MISSING_TIME: u64 = 0x7ff8_0000_0000_0000;
const ZSTD_LEVEL: i32 = 1;

/// The chunk number holding `step`.
pub fn chunk_of(step: u64) -> i64 {
    (step >> CHUNK_SHIFT) as i64
}

#[derive(Debug, Error)]
pub enum ChunkError {
    #[error("unknown chunk version {0}")]
    Version(u8),
    #[error("chunk is truncated or corrupt")]
    Corrupt,
    #[error("chunk decompression failed: {0}")]
    Zstd(#[from] std::io::Error),
}

/// Summary kept next to each chunk so reads and the series list need not
/// decode it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkStats {
    pub n: i64,
    pub min_step: i64,
    pub max_step: i64,
    /// Over finite values only; `None` when there is none.
    pub min_value: Option<f64>,
    pub max_value: Option<f64>,
    pub nonfinite: i64,
}

/// Summarises non-empty sorted `points`.
pub fn stats(points: &[Point]) -> ChunkStats {
    let mut min_value: Option<f64> = None;
    let mut max_value: Option<f64> = None;
    let mut nonfinite = 0;
    for p in points {
        if p.value.is_finite() {
            min_value = Some(min_value.map_or(p.value, |m| m.min(p.value)));
            max_value = Some(max_value.map_or(p.value, |m| m.max(p.value)));
        } else {
            nonfinite += 1;
        }
    }
    ChunkStats {
        n: points.len() as i64,
        min_step: points.first().map_or(0, |p| p.step as i64),
        max_step: points.last().map_or(0, |p| p.step as i64),
        min_value,
        max_value,
        nonfinite,
    }
}

/// Encodes points sorted by strictly increasing step.
pub fn encode(points: &[Point]) -> Vec<u8> {
    debug_assert!(points.windows(2).all(|w| w[0].step < w[1].step));
    let n = points.len();
    let has_times = points.iter().any(|p| p.time.is_some());
    let mut raw = Vec::with_capacity(16 + n * if has_times { 13 } else { 10 });
    put_varint(&mut raw, n as u64);
    raw.push(if has_times { FLAG_TIMES } else { 0 });

    let mut prev = 0u64;
    for (i, p) in points.iter().enumerate() {
        put_varint(&mut raw, if i == 0 { p.step } else { p.step - prev });
        prev = p.step;
    }

    let start = raw.len();
    raw.resize(start + 8 * n, 0);
    let mut prev = 0u64;
    for (i, p) in points.iter().enumerate() {
        let bits = p.value.to_bits();
        let x = (bits ^ prev).to_le_bytes();
        prev = bits;
        for (plane, byte) in x.iter().enumerate() {
            raw[start + plane * n + i] = *byte;
        }
    }

    if has_times {
        let mut prev = 0u64;
        for p in points {
            let bits = p.time.map_or(MISSING_TIME, f64::to_bits);
            put_varint(&mut raw, zigzag(bits.wrapping_sub(prev) as i64));
            prev = bits;
        }
    }

    let mut out = vec![VERSION];
    out.extend(
        zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd compression of a memory buffer"),
    );
    out
}

/// Decodes a chunk written by [`encode`].
pub fn decode(blob: &[u8]) -> Result<Vec<Point>, ChunkError> {
    let mut points = Vec::new();
    decode_into(blob, &mut points)?;
    Ok(points)
}

/// Decodes a chunk, appending its points to `out`.
pub fn decode_into(blob: &[u8], out: &mut Vec<Point>) -> Result<(), ChunkError> {
    let (&version, body) = blob.split_first().ok_or(ChunkError::Corrupt)?;
    if version != VERSION {
        return Err(ChunkError::Version(version));
    }
    let raw = zstd::stream::decode_all(body)?;
    let mut r = Reader { buf: &raw, pos: 0 };
    let n = usize::try_from(r.varint()?).map_err(|_| ChunkError::Corrupt)?;
    if n > raw.len() {
        return Err(ChunkError::Corrupt);
    }
    let flags = r.byte()?;
    let base = out.len();
    out.reserve(n);
    let mut step = 0u64;
    for i in 0..n {
        let d = r.varint()?;
        step = if i == 0 {
            d
        } else {
            step.checked_add(d).ok_or(ChunkError::Corrupt)?
        };
        out.push(Point {
            step,
            value: 0.0,
            time: None,
        });
    }
    let planes = r.take(8 * n)?;
    let mut prev = 0u64;
    for (i, p) in out[base..].iter_mut().enumerate() {
        let mut x = [0u8; 8];
        for (plane, byte) in x.iter_mut().enumerate() {
            *byte = planes[plane * n + i];
        }
        prev ^= u64::from_le_bytes(x);
        p.value = f64::from_bits(prev);
    }
    if flags & FLAG_TIMES != 0 {
        let mut prev = 0u64;
        for p in out[base..].iter_mut() {
            prev = prev.wrapping_add(unzigzag(r.varint()?) as u64);
            p.time = (prev != MISSING_TIME).then(|| f64::from_bits(prev));
        }
    }
    Ok(())
}

/// Merges `new` into `old` (both sorted by step, `new` possibly with repeated
/// steps, the later one winning); a step present in both takes `new`'s point.
pub fn merge(old: &[Point], new: &[Point]) -> Vec<Point> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let take_new = j < new.len() && (i >= old.len() || new[j].step <= old[i].step);
        if take_new {
            if i < old.len() && old[i].step == new[j].step {
                i += 1;
            }
            // Within `new`, the last of equal steps wins.
            while j + 1 < new.len() && new[j + 1].step == new[j].step {
                j += 1;
            }
            out.push(new[j]);
            j += 1;
        } else {
            out.push(old[i]);
            i += 1;
        }
    }
    out
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, ChunkError> {
        let b = *self.buf.get(self.pos).ok_or(ChunkError::Corrupt)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, ChunkError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ChunkError::Corrupt)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ChunkError> {
        let end = self.pos.checked_add(len).ok_or(ChunkError::Corrupt)?;
        let s = self.buf.get(self.pos..end).ok_or(ChunkError::Corrupt)?;
        self.pos = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_bit() {
        let points = vec![
            Point::new(0, 2.302_585_092_994_1, Some(1_700_000_000.05)),
            Point::new(1, f64::NAN, Some(1_700_000_000.1)),
            Point::new(5, f64::INFINITY, None),
            Point::new(6, f64::NEG_INFINITY, Some(1_699_999_999.0)),
            Point::new(4095, -0.0, Some(1_700_000_001.0)),
            Point::new(u64::MAX >> 1, 1e-300, None),
        ];
        let back = decode(&encode(&points)).unwrap();
        assert_eq!(back, points);
        assert!(back[4].value.is_sign_negative());
    }

    #[test]
    fn without_times_every_time_is_none() {
        let points: Vec<_> = (0..100)
            .map(|i| Point::new(i * 5, i as f64 * 0.5, None))
            .collect();
        assert_eq!(decode(&encode(&points)).unwrap(), points);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn a_noisy_float32_curve_compresses_well() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let points: Vec<_> = (0..4096u64)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let noise = (x % 1000) as f64 / 1000.0;
                let v = (2.0 * (-(i as f64) / 1000.0).exp() + 0.1 * noise) as f32;
                Point::new(i, f64::from(v), Some(1_700_000_000.0 + i as f64 * 0.013))
            })
            .collect();
        let blob = encode(&points);
        assert!(blob.len() < points.len() * 10, "{} bytes", blob.len());
        assert_eq!(decode(&blob).unwrap(), points);
    }

    #[test]
    fn corrupt_blobs_are_errors_not_panics() {
        let blob = encode(&[Point::new(1, 1.0, None), Point::new(2, 2.0, None)]);
        assert!(matches!(decode(&[]), Err(ChunkError::Corrupt)));
        assert!(matches!(decode(&[9, 1, 2]), Err(ChunkError::Version(9))));
        assert!(decode(&blob[..blob.len() - 3]).is_err());
        let raw_garbage = [VERSION]
            .into_iter()
            .chain(zstd::bulk::compress(&[200, 200, 200, 1], 1).unwrap())
            .collect::<Vec<_>>();
        assert!(decode(&raw_garbage).is_err());
    }

    #[test]
    fn merge_replaces_equal_steps_and_keeps_order() {
        let old = [
            Point::new(1, 1.0, None),
            Point::new(3, 3.0, None),
            Point::new(5, 5.0, None),
        ];
        let new = [
            Point::new(0, 0.0, None),
            Point::new(3, 30.0, None),
            Point::new(3, 31.0, None),
            Point::new(6, 6.0, None),
        ];
        let steps: Vec<_> = merge(&old, &new)
            .iter()
            .map(|p| (p.step, p.value))
            .collect();
        assert_eq!(steps, [(0, 0.0), (1, 1.0), (3, 31.0), (5, 5.0), (6, 6.0)]);
    }

    #[test]
    fn stats_ignore_nonfinite_values() {
        let s = stats(&[
            Point::new(2, f64::NAN, None),
            Point::new(3, -1.0, None),
            Point::new(9, 4.0, None),
            Point::new(10, f64::INFINITY, None),
        ]);
        assert_eq!(
            s,
            ChunkStats {
                n: 4,
                min_step: 2,
                max_step: 10,
                min_value: Some(-1.0),
                max_value: Some(4.0),
                nonfinite: 2
            }
        );
    }
}
