"""Writes TensorBoard event files for tests/import_tb.rs and prints, as one
JSON object, what it wrote: per run (its directory relative to the logdir),
the scalars (key -> [[step, value]]), the histograms (key -> [[step, count,
min, max]]), the image keys and the hyperparameters.

    python write_events.py LOGDIR    # tensorboardX, and torch.utils.tensorboard when importable

Values are float32 (what simple_value holds), printed exactly.
"""

import json
import os
import sys

import numpy as np


def f32(v):
    return float(np.float32(v))


def png(chw):
    """A PNG of a float CHW array in [0, 1], with the standard library."""
    import struct
    import zlib

    c, h, w = chw.shape
    pixels = (np.clip(chw, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_tbx(logdir, out):
    from tensorboardX import SummaryWriter
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboardX.proto.tensor_pb2 import TensorProto
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

    run = {"scalars": {}, "histograms": {}, "images": [], "hparams": {}}
    w = SummaryWriter(os.path.join(logdir, "tbx"))
    for step in range(50):
        loss = 2.0 / (step + 1) + 0.01 * step
        w.add_scalar("train/loss", loss, step)
        run["scalars"].setdefault("train/loss", []).append([step, f32(loss)])
        if step % 5 == 0:
            lr = 0.1 * 0.9 ** step
            w.add_scalar("lr", lr, step)
            run["scalars"].setdefault("lr", []).append([step, f32(lr)])
    rng = np.random.default_rng(0)
    for step in (0, 10, 20):
        values = rng.normal(size=1000) * (1 + step / 10)
        w.add_histogram("weights/fc1", values, step)
        run["histograms"].setdefault("weights/fc1", []).append(
            [step, 1000, float(values.min()), float(values.max())])
    # TF2's histogram form: a [k,3] float64 tensor of (left, right, count).
    rows = [[-1.0, 0.0, 3.0], [0.0, 0.5, 5.0], [0.5, 2.0, 2.0]]
    tensor = TensorProto(dtype=2, double_val=[v for r in rows for v in r],
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=3), TensorShapeProto.Dim(size=3)]))
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="histograms"))
    w._get_file_writer().add_summary(Summary(value=[Summary.Value(tag="tf2/hist", tensor=tensor, metadata=meta)]), 7)
    run["histograms"]["tf2/hist"] = [[7, 10, -1.0, 2.0]]
    img = np.zeros((3, 8, 8), dtype=np.float32)
    img[0, :4, :] = 1.0
    try:
        import PIL  # noqa: F401  (add_image encodes with Pillow)
        w.add_image("inputs/sample", img, 0)
    except ImportError:
        image = Summary.Image(height=8, width=8, colorspace=3, encoded_image_string=png(img))
        w._get_file_writer().add_summary(Summary(value=[Summary.Value(tag="inputs/sample", image=image)]), 0)
    run["images"].append("inputs/sample")
    # add_hparams writes the hyperparameters and the metrics into a child run.
    # (The same writer: tensorboardX names files by the second and the
    # host, so a second writer in the same second would replace the file.)
    w.add_hparams({"lr": 0.1, "batch_size": 32, "optimizer": "sgd"}, {"hparam/accuracy": 0.75}, name="hp")
    w.close()
    out["tbx"] = run
    out["tbx/hp"] = {
        "scalars": {"hparam/accuracy": [[0, f32(0.75)]]},
        "histograms": {}, "images": [],
        "hparams": {"lr": 0.1, "batch_size": 32, "optimizer": "sgd"},
    }


def write_torch(logdir, out):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as e:  # torch missing, or its tensorboard package
        print(f"torch.utils.tensorboard not importable: {e}", file=sys.stderr)
        return
    import torch

    run = {"scalars": {}, "histograms": {}, "images": [], "hparams": {}}
    w = SummaryWriter(os.path.join(logdir, "torch"))
    for step in range(30):
        v = 1.0 / (step + 1)
        w.add_scalar("simple", v, step)
        run["scalars"].setdefault("simple", []).append([step, f32(v)])
        w.add_scalar("tensor", v * 2, step, new_style=True)
        run["scalars"].setdefault("tensor", []).append([step, f32(v * 2)])
        w.add_scalar("double", v * 3, step, new_style=True, double_precision=True)
        run["scalars"].setdefault("double", []).append([step, v * 3])
    torch.manual_seed(0)
    for step in (0, 5):
        t = torch.randn(500)
        w.add_histogram("grads/fc1", t, step)
        run["histograms"].setdefault("grads/fc1", []).append(
            [step, 500, float(t.min()), float(t.max())])
    w.close()
    out["torch"] = run


def main():
    logdir = sys.argv[1]
    out = {}
    write_tbx(logdir, out)
    write_torch(logdir, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
