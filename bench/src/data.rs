//! Deterministic, realistic-looking training metrics and their pre-serialized
//! request bodies.
//!
//! Every request body is encoded once, before any timer starts, so the bench
//! client's JSON encoding is never part of a measured figure.

use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

/// Small xorshift64 PRNG (seeded through splitmix64 so any seed works).
pub struct XorShift64(u64);

impl XorShift64 {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Loss,
    LearningRate,
    GradNorm,
    Accuracy,
    Throughput,
}

/// `n` metric names that look like a real run: a handful of top-level metrics
/// followed by per-layer gradient / weight norms.
pub fn key_names(n: usize) -> Vec<String> {
    const FIXED: [&str; 8] = [
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/accuracy",
        "val/loss",
        "val/accuracy",
        "train/tokens_per_sec",
        "train/aux_loss",
    ];
    let mut out: Vec<String> = FIXED.iter().take(n).map(|s| s.to_string()).collect();
    let mut j = 0usize;
    while out.len() < n {
        let layer = j / 4;
        let name = match j % 4 {
            0 => format!("layers.{layer:02}.attn/grad_norm"),
            1 => format!("layers.{layer:02}.mlp/grad_norm"),
            2 => format!("layers.{layer:02}.attn/weight_norm"),
            _ => format!("layers.{layer:02}.mlp/weight_norm"),
        };
        out.push(name);
        j += 1;
    }
    out
}

pub fn kind_of(name: &str) -> Kind {
    if name.ends_with("loss") {
        Kind::Loss
    } else if name.ends_with("/lr") {
        Kind::LearningRate
    } else if name.ends_with("accuracy") {
        Kind::Accuracy
    } else if name.ends_with("tokens_per_sec") {
        Kind::Throughput
    } else {
        Kind::GradNorm
    }
}

/// Round through f32, like `float(tensor.item())` of a float32 tensor.
fn f32ish(v: f64) -> f64 {
    (v as f32) as f64
}

/// Values for steps `0..n` of one metric. Loss curves contain a NaN at steps
/// where `step % 25_000 == 12_345` (a realistic rare divergence) so the
/// `"NaN"` encoding of the contract is exercised.
pub fn gen_values(kind: Kind, seed: u64, n: u64) -> Vec<f64> {
    let mut rng = XorShift64::new(seed);
    let nf = n.max(1) as f64;
    // Per-key shape parameters.
    let init = 2.0 + 8.0 * rng.uniform();
    let floor = 0.05 + 0.5 * rng.uniform();
    let tau = 200.0 + 2000.0 * rng.uniform();
    let alpha = 0.4 + 0.4 * rng.uniform();
    let peak_lr = 1e-4 + 5e-4 * rng.uniform();
    let base_norm = 0.2 + 3.0 * rng.uniform();
    let tput = 8_000.0 + 8_000.0 * rng.uniform();
    let warmup = (nf * 0.02).max(1.0);
    let mut out = Vec::with_capacity(n as usize);
    for s in 0..n {
        let sf = s as f64;
        let decay = (1.0 + sf / tau).powf(-alpha);
        let v = match kind {
            Kind::Loss => {
                if s % 25_000 == 12_345 {
                    f64::NAN
                } else {
                    let mean = floor + (init - floor) * decay;
                    let noisy = mean * (1.0 + 0.05 * rng.normal());
                    f32ish(noisy.max(1e-4))
                }
            }
            Kind::LearningRate => {
                // Linear warmup then cosine decay to 10% of peak; no noise.
                let lr = if sf < warmup {
                    peak_lr * (sf + 1.0) / warmup
                } else {
                    let p = (sf - warmup) / (nf - warmup).max(1.0);
                    peak_lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
                };
                f32ish(lr)
            }
            Kind::GradNorm => {
                let mu = (base_norm * (0.3 + 0.7 * decay)).ln();
                f32ish((mu + 0.3 * rng.normal()).exp())
            }
            Kind::Accuracy => {
                let acc = 1.0 - 0.9 * (1.0 + sf / tau).powf(-0.5) + 0.01 * rng.normal();
                f32ish(acc.clamp(0.0, 1.0))
            }
            Kind::Throughput => f32ish(tput + 0.03 * tput * rng.normal()),
        };
        out.push(v);
    }
    out
}

/// Wall-clock times (unix seconds, full f64 precision like Python's
/// `time.time()`) for steps `0..n`: ~0.42 s per step with jitter and a 30 s
/// pause every 5,000 steps (checkpoint save).
pub fn gen_times(n: u64, seed: u64) -> Vec<f64> {
    let mut rng = XorShift64::new(seed);
    let mut t = 1_700_000_000.0 + 1_000.0 * rng.uniform();
    let mut out = Vec::with_capacity(n as usize);
    for s in 0..n {
        out.push(t);
        t += 0.42 * (1.0 + 0.05 * rng.normal()).max(0.5);
        if s > 0 && s % 5_000 == 0 {
            t += 30.0 + rng.uniform();
        }
    }
    out
}

/// Finite floats as JSON numbers, non-finite ones as the contract's strings.
struct JsonFloats<'a>(&'a [f64]);

impl Serialize for JsonFloats<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(Some(self.0.len()))?;
        for &v in self.0 {
            if v.is_finite() {
                seq.serialize_element(&v)?;
            } else if v.is_nan() {
                seq.serialize_element("NaN")?;
            } else if v > 0.0 {
                seq.serialize_element("Infinity")?;
            } else {
                seq.serialize_element("-Infinity")?;
            }
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct SeriesOut<'a> {
    key: &'a str,
    steps: &'a [u64],
    values: JsonFloats<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    times: Option<JsonFloats<'a>>,
}

#[derive(Serialize)]
struct ScalarsBody<'a> {
    series: [SeriesOut<'a>; 1],
}

/// One pre-serialized `POST /scalars` request body.
#[derive(Clone)]
pub struct Batch {
    pub body: Bytes,
    pub points: usize,
}

pub fn encode_batch(key: &str, steps: &[u64], values: &[f64], times: Option<&[f64]>) -> Batch {
    let body = ScalarsBody {
        series: [SeriesOut {
            key,
            steps,
            values: JsonFloats(values),
            times: times.map(JsonFloats),
        }],
    };
    let bytes = serde_json::to_vec(&body).expect("serializing a batch cannot fail");
    Batch {
        body: Bytes::from(bytes),
        points: steps.len(),
    }
}

/// The sustained-ingest workload: `keys` metrics x `steps` steps, one key x
/// `batch` steps per request; client `c` owns keys `c, c+clients, ...` and
/// sends them round-robin (batch 0 of each of its keys, then batch 1, ...), as
/// a training loop appends to all of its metrics over time.
pub struct IngestData {
    pub keys: Vec<String>,
    pub per_client: Vec<Vec<Batch>>,
    pub total_points: u64,
    pub total_bytes: u64,
    pub requests: usize,
}

pub fn build_ingest(
    keys: usize,
    steps: u64,
    batch: usize,
    clients: usize,
    with_times: bool,
) -> IngestData {
    let names = key_names(keys);
    let step_ids: Vec<u64> = (0..steps).collect();
    let times = gen_times(steps, 0xC10C);
    let mut per_key: Vec<Vec<Batch>> = Vec::with_capacity(keys);
    for (i, name) in names.iter().enumerate() {
        let values = gen_values(kind_of(name), 1_000 + i as u64, steps);
        per_key.push(encode_batches(
            name,
            &step_ids,
            &values,
            with_times.then_some(&times[..]),
            batch,
        ));
    }
    let mut per_client: Vec<Vec<Batch>> = vec![Vec::new(); clients];
    for (c, out) in per_client.iter_mut().enumerate() {
        let mine: Vec<usize> = (c..keys).step_by(clients).collect();
        let nb = mine.iter().map(|&k| per_key[k].len()).max().unwrap_or(0);
        for b in 0..nb {
            for &k in &mine {
                if let Some(batch) = per_key[k].get(b) {
                    out.push(batch.clone());
                }
            }
        }
    }
    let total_points = per_client.iter().flatten().map(|b| b.points as u64).sum();
    let total_bytes = per_client
        .iter()
        .flatten()
        .map(|b| b.body.len() as u64)
        .sum();
    let requests = per_client.iter().map(Vec::len).sum();
    IngestData {
        keys: names,
        per_client,
        total_points,
        total_bytes,
        requests,
    }
}

/// One key of `steps` points (a loss curve without NaNs), in `batch`-point
/// request bodies, for the read benchmarks.
pub fn build_single(
    key: &str,
    steps: u64,
    batch: usize,
    with_times: bool,
    seed: u64,
) -> Vec<Batch> {
    // A loss curve; the injected NaNs are replaced by the previous value.
    let mut values = gen_values(Kind::Loss, seed, steps);
    for i in 0..values.len() {
        if values[i].is_nan() {
            values[i] = if i > 0 { values[i - 1] } else { 1.0 };
        }
    }
    let times = gen_times(steps, seed ^ 0x7157);
    let step_ids: Vec<u64> = (0..steps).collect();
    encode_batches(
        key,
        &step_ids,
        &values,
        with_times.then_some(&times[..]),
        batch,
    )
}

/// The series `key` (`steps` with `values`, and `times` if given) cut into
/// request bodies of `batch` points (the last one may be shorter).
fn encode_batches(
    key: &str,
    steps: &[u64],
    values: &[f64],
    times: Option<&[f64]>,
    batch: usize,
) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < steps.len() {
        let end = (start + batch).min(steps.len());
        out.push(encode_batch(
            key,
            &steps[start..end],
            &values[start..end],
            times.map(|t| &t[start..end]),
        ));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape_and_nan_encoding() {
        let b = encode_batch("train/loss", &[0, 1], &[0.5, f64::NAN], Some(&[1.5, 2.5]));
        let s = std::str::from_utf8(&b.body).unwrap();
        assert_eq!(
            s,
            r#"{"series":[{"key":"train/loss","steps":[0,1],"values":[0.5,"NaN"],"times":[1.5,2.5]}]}"#
        );
        let b = encode_batch("k", &[3], &[1.0], None);
        assert_eq!(
            std::str::from_utf8(&b.body).unwrap(),
            r#"{"series":[{"key":"k","steps":[3],"values":[1.0]}]}"#
        );
    }

    #[test]
    fn ingest_layout_is_disjoint_and_complete() {
        let d = build_ingest(10, 50, 10, 4, true);
        assert_eq!(d.total_points, 500);
        assert_eq!(d.requests, 50);
        assert_eq!(d.keys.len(), 10);
        let names = key_names(100);
        let uniq: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(uniq.len(), 100);
    }
}
