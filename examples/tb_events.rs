//! Writes a TensorBoard event file of N scalars, one per event as
//! tensorboardX and torch write them (10 tags, N/10 steps each), for the
//! import benchmark (`bench/import_tb.sh`).
//!
//!     cargo run --release --example tb_events -- OUT_FILE [N]

use std::io::Write;

use prost::Message;
use trainlens::tensorboard::framing::frame;
use trainlens::tensorboard::proto::{Event, Summary, SummaryValue, ValueKind, What};

const TAGS: [&str; 10] = [
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "lr",
    "grad_norm/fc1",
    "grad_norm/fc2",
    "weight_norm/fc1",
    "weight_norm/fc2",
    "throughput",
];

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: tb_events OUT_FILE [N]");
    let n: u64 = args.next().map_or(1_000_000, |s| s.parse().expect("N"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    let header = Event {
        wall_time: 1.7e9,
        step: 0,
        what: Some(What::FileVersion("brain.Event:2".into())),
    };
    w.write_all(&frame(&header.encode_to_vec()))?;
    let steps = n / TAGS.len() as u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..steps {
        for (i, tag) in TAGS.iter().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x >> 40) as f32 / (1u64 << 24) as f32;
            let value = (i as f32 + 1.0) / (1.0 + step as f32 / 1000.0) + 0.05 * noise;
            let event = Event {
                wall_time: 1.7e9 + step as f64 * 0.4 + i as f64 * 1e-4,
                step: step as i64,
                what: Some(What::Summary(Summary {
                    value: vec![SummaryValue {
                        tag: (*tag).into(),
                        metadata: None,
                        value: Some(ValueKind::SimpleValue(value)),
                    }],
                })),
            };
            w.write_all(&frame(&event.encode_to_vec()))?;
        }
    }
    w.flush()
}
