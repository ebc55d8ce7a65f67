"""Builders of the record format's version-2 records: ``image``, ``tensor``
and ``predictions`` (docs/record-format.md).

Each builder is pure: it returns one record as a dict, ready for JSON
(``json.dumps(record, allow_nan=False)``), and refuses bad input at once with
a :class:`ValueError` that names the argument — before anything is sent.
``run.log_image``, ``run.log_tensor`` and ``run.log_predictions`` call them.

    from trainlens import records
    records.image("inputs/sample-0", png_bytes, step=0)
    records.image("features/conv1", model_output[0, :8], step=500)
    records.tensor("weights/fc1", model.fc1.weight, step=500)
    records.predictions("val", labels, probs, step=500, top_k=5)

Standard library only: numpy and torch are used only when the object passed
is a numpy array or a torch tensor (read on the CPU, after any slicing, so a
sample of a large GPU tensor moves only the sample). Other array-likes
(nested lists and tuples; objects numpy can read, such as a PIL image) work
too. NaN and infinities are kept as ``"NaN"``, ``"Infinity"``,
``"-Infinity"``, as everywhere in the client.
"""

from __future__ import annotations

import base64
import math
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _value as _float_value

__all__ = ["image", "tensor", "predictions", "image_layout",
           "MAX_TENSOR_VALUES", "MAX_IMAGE_PNG_BYTES", "MAX_PREDICTION_SAMPLES",
           "MAX_FULL_CLASSES", "MAX_TOP_K"]

#: Values of a feature map or a tensor (the server's default ``max_tensor_values``).
MAX_TENSOR_VALUES = 1_048_576
#: Bytes of a PNG (the server's default ``max_image_png_bytes``).
MAX_IMAGE_PNG_BYTES = 4 * 1024 * 1024
#: Samples in one predictions record (the server's default ``max_prediction_samples``).
MAX_PREDICTION_SAMPLES = 20_000
#: Classes listed in full per sample; beyond, use top-k (a rule of the format).
MAX_FULL_CLASSES = 100
#: Classes per sample in top-k predictions (a rule of the format).
MAX_TOP_K = 20
#: Default ``max_values`` of :func:`tensor`.
DEFAULT_TENSOR_VALUES = 65_536

MAX_STEP = 2 ** 63 - 1
MAX_KEY_BYTES = 256
MAX_NAME_BYTES = 256
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Probabilities may stray this far outside [0, 1] (rounding), as on the server.
PROB_TOLERANCE = 1e-6


# -- small checks ----------------------------------------------------------------
def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    s = step.__index__()
    if not 0 <= s <= MAX_STEP:
        raise ValueError(f"step must be an integer from 0 to 2**63-1, got {s}")
    return s


def _check_key(key: Any, arg: str = "key") -> str:
    if not isinstance(key, str):
        raise ValueError(f"{arg} must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError(f"{arg} must not be empty")
    n = len(key.encode("utf-8"))
    if n > MAX_KEY_BYTES:
        raise ValueError(f"{arg} is {n} bytes long; the limit is {MAX_KEY_BYTES}")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in key):
        raise ValueError(f"{arg} must not contain control characters: {key!r}")
    return key


def _check_name(name: Any, arg: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{arg} must be a str, got {type(name).__name__}")
    if "\0" in name:
        raise ValueError(f"{arg} must not contain a NUL character")
    if not name.strip():
        raise ValueError(f"{arg} must not be empty or blank")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"{arg} is longer than {MAX_NAME_BYTES} bytes")
    return name


def _value(v: Any) -> Any:
    """A JSON value of the format: a number, or "NaN"/"Infinity"/"-Infinity"
    (as the core client sends a float; an integer is kept as it is)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return _float_value(v)


def _values(flat: List[Any]) -> List[Any]:
    isfinite = math.isfinite
    if all(isinstance(v, int) or isfinite(v) for v in flat):
        return flat
    return [_value(v) for v in flat]


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# -- arrays ----------------------------------------------------------------------
def _torch_tensor(data: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(data, torch.Tensor)


def _numpy_array(data: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(data, (np.ndarray, np.generic))


class _Nested:
    """A nested list/tuple of numbers, flattened: shape and row-major values."""

    __slots__ = ("shape", "flat")

    def __init__(self, shape: Tuple[int, ...], flat: List[Any]) -> None:
        self.shape = shape
        self.flat = flat

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _number(v: Any, arg: str, where: Sequence[int]) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str) or not hasattr(v, "__float__"):
        at = "".join(f"[{i}]" for i in where)
        raise ValueError(f"{arg}{at} is not a number: {v!r}")
    if isinstance(v, complex):
        raise ValueError(f"{arg} holds complex numbers")
    return v.__index__() if hasattr(v, "__index__") else float(v)


def _nested(data: Any, arg: str) -> _Nested:
    shape: List[int] = []
    x = data
    while isinstance(x, (list, tuple)):
        shape.append(len(x))
        if not x:
            break
        x = x[0]
    depth = len(shape)
    flat: List[Any] = []

    def walk(x: Any, d: int, where: List[int]) -> None:
        if not isinstance(x, (list, tuple)) or len(x) != shape[d]:
            at = "".join(f"[{i}]" for i in where)
            raise ValueError(f"{arg} is ragged: {arg}{at} should be a sequence of {shape[d]} "
                             f"(shape {shape[:d + 1]}), got {type(x).__name__}"
                             + (f" of {len(x)}" if isinstance(x, (list, tuple)) else ""))
        if d == depth - 1:
            for i, v in enumerate(x):
                flat.append(_number(v, arg, where + [i]))
        else:
            for i, v in enumerate(x):
                walk(v, d + 1, where + [i])

    if depth == 0:
        flat.append(_number(data, arg, []))
    else:
        walk(data, 0, [])
    return _Nested(tuple(shape), flat)


def _as_array(data: Any, arg: str) -> Any:
    """A torch tensor (detached), a numpy array or a :class:`_Nested`."""
    if _torch_tensor(data):
        t = data.detach()
        if t.is_complex():
            raise ValueError(f"{arg} is a complex tensor; pass its real part or abs()")
        return t
    if _numpy_array(data):
        import numpy as np
        a = np.asarray(data)
        if a.dtype.kind not in "biuf":
            try:
                a = a.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{arg} is a numpy array of {a.dtype}, not of numbers") from None
        return a
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        raise ValueError(f"{arg} must be an array of numbers, got {type(data).__name__}")
    if isinstance(data, (list, tuple, int, float)):
        return _nested(data, arg)
    if hasattr(data, "__array__") or hasattr(data, "__array_interface__"):
        try:
            import numpy as np
        except ImportError:
            pass
        else:
            return _as_array(np.asarray(data), arg)
    if hasattr(data, "tolist"):
        return _nested(data.tolist(), arg)
    if hasattr(data, "__iter__"):
        return _nested(list(data), arg)
    return _nested(data, arg)


def _shape(a: Any) -> Tuple[int, ...]:
    return tuple(int(d) for d in a.shape)


def _flat(a: Any) -> List[Any]:
    """Row-major values: ints for integer and bool arrays, floats otherwise."""
    if isinstance(a, _Nested):
        return _values(a.flat)
    if _torch_tensor(a):
        import torch
        t = a.cpu()
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        if t.is_floating_point():
            t = t.to(torch.float64)
        return _values(t.reshape(-1).tolist())
    import numpy as np
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    elif a.dtype.kind == "f":
        a = a.astype(np.float64)
    return _values(a.reshape(-1).tolist())


def _block(a: Any, take: Sequence[int]) -> Any:
    """The leading ``take[i]`` indices along each dimension."""
    shape = _shape(a)
    if tuple(take) == shape:
        return a
    if not isinstance(a, _Nested):
        return a[tuple(slice(0, k) for k in take)]
    # Row-major strides, then every index of the block in order.
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    offsets = [0]
    for d in range(len(shape)):
        offsets = [o + j * strides[d] for o in offsets for j in range(take[d])]
    flat = a.flat
    return _Nested(tuple(take), [flat[o] for o in offsets])


def _hwc_to_chw(a: Any) -> Any:
    if _torch_tensor(a):
        return a.permute(2, 0, 1)
    if not isinstance(a, _Nested):
        return a.transpose(2, 0, 1)
    h, w, c = a.shape
    f = a.flat
    return _Nested((c, h, w), [f[(y * w + x) * c + ch] for ch in range(c) for y in range(h)
                               for x in range(w)])


def _reshape(a: Any, shape: Tuple[int, ...]) -> Any:
    if isinstance(a, _Nested):
        return _Nested(shape, a.flat)
    return a.reshape(shape)


# -- image -----------------------------------------------------------------------
def image_layout(shape: Sequence[int]) -> str:
    """How :func:`image` reads an array of ``shape`` with ``layout="auto"``:
    ``"hw"`` for 2 dimensions; for 3, ``"hwc"`` when the last dimension is 3
    or 4 (RGB, RGBA) and the first is not, else ``"chw"``."""
    if len(shape) == 2:
        return "hw"
    if len(shape) == 3:
        return "hwc" if shape[2] in (3, 4) and shape[0] not in (3, 4) else "chw"
    raise ValueError(f"data must have shape [H, W], [C, H, W] or [H, W, C], got {list(shape)}")


def image(key: str, data: Any, step: int, *, layout: str = "auto") -> Dict[str, Any]:
    """An ``image`` record: a picture or a feature map at ``step``.

    ``data`` is either the bytes of a PNG file (sent as ``png``, base64; at
    most 4 MiB), or an array — a numpy array, a torch tensor, nested lists, a
    PIL image — of shape ``[H, W]`` (one channel), ``[C, H, W]``, or
    ``[H, W, C]``; sent as ``shape`` ``[C, H, W]`` and ``values``
    row-major (channel, row, column), at most 1,048,576 values.

    A 3-dimensional array is read as ``[H, W, C]`` when its last dimension is
    3 or 4 and its first is not (an RGB or RGBA picture), otherwise as
    ``[C, H, W]``; ``layout="chw"`` or ``"hwc"`` says it explicitly (a
    feature map with 8 channels of 4×4 is ``[8, 4, 4]``: pass
    ``layout="chw"``, or ``auto`` would read it as 8×4 pixels of 4 channels).
    Values are sent as they are (no scaling); NaN and infinities as
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    key = _check_key(key)
    step = _check_step(step)
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if not raw.startswith(PNG_SIGNATURE):
            raise ValueError("data: bytes must be a PNG file (they do not start with the PNG "
                             "signature); pass other pictures as an array")
        if len(raw) > MAX_IMAGE_PNG_BYTES:
            raise ValueError(f"data: the PNG is {len(raw):,} bytes; the limit is "
                             f"{MAX_IMAGE_PNG_BYTES:,} (max_image_png_bytes)")
        return {"type": "image", "step": step, "key": key,
                "png": base64.b64encode(raw).decode("ascii")}
    if layout not in ("auto", "chw", "hwc"):
        raise ValueError(f"layout must be 'auto', 'chw' or 'hwc', got {layout!r}")
    a = _as_array(data, "data")
    shape = _shape(a)
    if len(shape) not in (2, 3):
        hint = " (a batch? pass one sample, data[0])" if len(shape) == 4 else ""
        raise ValueError(f"data must have shape [H, W], [C, H, W] or [H, W, C], got "
                         f"{list(shape)}{hint}")
    if any(d < 1 for d in shape):
        raise ValueError(f"data has an empty dimension: shape {list(shape)}")
    n = _count(shape)
    if n > MAX_TENSOR_VALUES:
        raise ValueError(f"data has {n:,} values (shape {list(shape)}); an image holds at most "
                         f"{MAX_TENSOR_VALUES:,} (max_tensor_values): take fewer channels or "
                         f"downsample, or send a PNG")
    if len(shape) == 2:
        a = _reshape(a, (1,) + shape)
    else:
        if layout == "auto":
            layout = image_layout(shape)
        if layout == "hwc":
            a = _hwc_to_chw(a)
    return {"type": "image", "step": step, "key": key, "shape": list(_shape(a)),
            "values": _flat(a)}


# -- tensor ----------------------------------------------------------------------
def _isqrt_k(n: int, k: int) -> int:
    """The largest s with s**k <= n (n >= 1)."""
    s = max(1, int(round(n ** (1.0 / k))))
    while s ** k > n:
        s -= 1
    while (s + 1) ** k <= n:
        s += 1
    return max(1, s)


def _sample_block(shape: Sequence[int], max_values: int) -> List[int]:
    """How many leading indices to keep per dimension so that the block holds
    at most ``max_values``: dimensions shorter than their fair share (the
    k-th root of what is left) are kept whole, the others cut to an equal
    side — a 1000×1000 matrix at 65,536 values gives its top-left 256×256."""
    take = list(shape)
    budget = max_values
    order = sorted(range(len(shape)), key=lambda i: shape[i])
    for idx, i in enumerate(order):
        left = len(order) - idx
        share = budget if left == 1 else _isqrt_k(budget, left)
        take[i] = max(1, min(shape[i], share))
        budget = max(1, budget // take[i])
    return take


def _axis_names(ndim: int) -> List[str]:
    if ndim == 1:
        return ["values"]
    if ndim == 2:
        return ["rows", "cols"]
    return [f"dim{i}" for i in range(ndim)]


def tensor(key: str, data: Any, step: int, sample: Optional[str] = None,
           max_values: int = DEFAULT_TENSOR_VALUES) -> Dict[str, Any]:
    """A ``tensor`` record: an array of any rank (a weight matrix, an
    attention map, an embedding table) at ``step``.

    With more than ``max_values`` values (default 65,536; at most 1,048,576)
    a contiguous block is sent: the leading indices of each dimension,
    dimensions shorter than their share kept whole — the top-left 256×256 of
    a 1000×1000 matrix — and ``sample`` says which part, the cut dimensions
    with their inclusive ranges: ``"rows:0-255,cols:0-255"`` (a matrix),
    ``"values:0-65535"`` (a vector), ``"dim0:0-84,dim1:0-84"`` (higher
    ranks). A ``sample`` passed in (how the caller took ``data`` from
    something bigger) is kept, before this one, separated by ``"; "``.
    Only the block is read (a GPU tensor moves just the block to the CPU).
    A scalar is sent with shape ``[1]``."""
    key = _check_key(key)
    step = _check_step(step)
    if sample is not None and not isinstance(sample, str):
        raise ValueError(f"sample must be a str or None, got {type(sample).__name__}")
    if isinstance(max_values, bool) or not isinstance(max_values, int) or max_values < 1:
        raise ValueError(f"max_values must be a positive integer, got {max_values!r}")
    if max_values > MAX_TENSOR_VALUES:
        raise ValueError(f"max_values is {max_values:,}; a tensor holds at most "
                         f"{MAX_TENSOR_VALUES:,} values (max_tensor_values)")
    a = _as_array(data, "data")
    shape = _shape(a)
    if not shape:
        a = _reshape(a, (1,))
        shape = (1,)
    if any(d < 1 for d in shape):
        raise ValueError(f"data has an empty dimension: shape {list(shape)}")
    rec: Dict[str, Any] = {"type": "tensor", "step": step, "key": key}
    notes = [sample] if sample else []
    if _count(shape) > max_values:
        take = _sample_block(shape, max_values)
        a = _block(a, take)
        names = _axis_names(len(shape))
        notes.append(",".join(f"{names[i]}:0-{take[i] - 1}" for i in range(len(shape))
                              if take[i] < shape[i]))
        shape = tuple(take)
    rec["shape"] = list(shape)
    rec["values"] = _flat(a)
    if notes:
        rec["sample"] = "; ".join(notes)
    return rec


# -- predictions -----------------------------------------------------------------
def _int_list(data: Any, arg: str) -> List[int]:
    a = _as_array(data, arg)
    shape = _shape(a)
    if len(shape) != 1:
        hint = " (one-hot? pass argmax over the classes)" if len(shape) == 2 else ""
        raise ValueError(f"{arg} must be one-dimensional (one class index per sample), got "
                         f"shape {list(shape)}{hint}")
    out = []
    for i, v in enumerate(_flat(a)):
        if isinstance(v, int):
            out.append(v)
        elif isinstance(v, float) and v.is_integer():
            out.append(int(v))
        else:
            raise ValueError(f"{arg}[{i}] is not a class index: {v!r}")
    return out


def _check_probs_native(p: Any) -> Optional[Tuple[int, int, Any]]:
    """The first probability outside [0, 1] (or not finite) of an array, if any."""
    tol = PROB_TOLERANCE
    if _torch_tensor(p):
        import torch
        x = p.to(torch.float64) if not p.is_floating_point() else p
        bad = ~(torch.isfinite(x) & (x >= -tol) & (x <= 1 + tol))
        if not bool(bad.any()):
            return None
        i, j = (int(v) for v in bad.nonzero()[0].tolist())
        return i, j, float(x[i, j])
    import numpy as np
    x = p.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(x) & (x >= -tol) & (x <= 1 + tol))
    if not bad.any():
        return None
    i, j = (int(v) for v in np.argwhere(bad)[0])
    return i, j, float(x[i, j])


def _top_k(p: Any, k: int) -> Tuple[List[List[int]], List[List[Any]]]:
    """Per row, the k largest probabilities (largest first; ties by the lower
    class index) and their class indices."""
    if _torch_tensor(p):
        import torch
        vals, idx = torch.sort(p.to(torch.float64), dim=1, descending=True, stable=True)
        return idx[:, :k].cpu().tolist(), vals[:, :k].cpu().tolist()
    if isinstance(p, _Nested):
        n, c = p.shape
        classes, probs = [], []
        for r in range(n):
            row = p.flat[r * c:(r + 1) * c]
            order = sorted(range(c), key=lambda j: -row[j])[:k]
            classes.append(order)
            probs.append([row[j] for j in order])
        return classes, probs
    import numpy as np
    x = p.astype(np.float64)
    idx = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return idx.tolist(), np.take_along_axis(x, idx, axis=1).tolist()


def _ids(ids: Any, n: int) -> List[Any]:
    if _torch_tensor(ids) or _numpy_array(ids):
        ids = ids.tolist()
    elif not isinstance(ids, (list, tuple)):
        try:
            ids = list(ids)
        except TypeError:
            raise ValueError(f"ids must be a sequence of strings or integers, got "
                             f"{type(ids).__name__}") from None
    if len(ids) != n:
        raise ValueError(f"ids has {len(ids)} entries for {n} samples")
    out: List[Any] = []
    for i, v in enumerate(ids):
        if isinstance(v, str):
            if len(v.encode("utf-8")) > MAX_KEY_BYTES or "\0" in v:
                raise ValueError(f"ids[{i}]: a string id has at most {MAX_KEY_BYTES} bytes and "
                                 f"no NUL character")
            out.append(v)
        elif not isinstance(v, bool) and hasattr(v, "__index__"):
            v = v.__index__()
            if not -2 ** 63 <= v < 2 ** 64:
                raise ValueError(f"ids[{i}] is out of the 64-bit range: {v}")
            out.append(v)
        else:
            raise ValueError(f"ids[{i}] must be a string or an integer, got {v!r}")
    return out


def predictions(split: str, labels: Any, probs: Any, step: int, ids: Any = None,
                top_k: Optional[int] = None) -> Dict[str, Any]:
    """A ``predictions`` record: a model's class probabilities on the samples
    of ``split`` at ``step``, with their true ``labels``.

    ``labels``: one class index per sample (ints; numpy, torch or a list).
    ``probs``: ``n × classes`` probabilities (after softmax: numbers from 0
    to 1). At most 100 classes are sent in full; with ``top_k`` (1–20) only
    each sample's ``top_k`` most probable classes are sent, as ``classes``
    (largest first) and ``probs``, with ``num_classes``. ``ids``: per sample
    a string or an integer to find it again. At most 20,000 samples (the
    server's ``max_prediction_samples``): send a subset, or several splits."""
    split = _check_name(split, "split")
    step = _check_step(step)
    lab = _int_list(labels, "labels")
    n = len(lab)
    if n == 0:
        raise ValueError("labels: predictions need at least one sample")
    if n > MAX_PREDICTION_SAMPLES:
        raise ValueError(f"labels: {n:,} samples; a predictions record holds at most "
                         f"{MAX_PREDICTION_SAMPLES:,} (max_prediction_samples): send a subset, "
                         f"or split them across several splits")
    p = _as_array(probs, "probs")
    shape = _shape(p)
    if len(shape) != 2:
        raise ValueError(f"probs must be two-dimensional (samples × classes), got shape "
                         f"{list(shape)}")
    if shape[0] != n:
        raise ValueError(f"probs has {shape[0]} rows for {n} labels")
    num_classes = shape[1]
    if num_classes < 1:
        raise ValueError("probs has no classes")
    if isinstance(p, _Nested):
        flat = p.flat
        for o, v in enumerate(flat):
            if not (math.isfinite(v) and -PROB_TOLERANCE <= v <= 1 + PROB_TOLERANCE):
                bad: Optional[Tuple[int, int, Any]] = (o // num_classes, o % num_classes, v)
                break
        else:
            bad = None
    else:
        bad = _check_probs_native(p)
    if bad is not None:
        i, j, v = bad
        raise ValueError(f"probs[{i}][{j}] is {v!r}: probabilities are numbers from 0 to 1 "
                         f"(logits? apply softmax first)")
    for i, label in enumerate(lab):
        if not 0 <= label < num_classes:
            raise ValueError(f"labels[{i}] is {label}: labels are class indices from 0 to "
                             f"{num_classes - 1} (probs has {num_classes} classes)")
    rec: Dict[str, Any] = {"type": "predictions", "step": step, "split": split, "labels": lab}
    if top_k is None:
        if num_classes > MAX_FULL_CLASSES:
            raise ValueError(f"probs has {num_classes} classes; more than {MAX_FULL_CLASSES} "
                             f"(MAX_FULL_CLASSES) are sent as the top k: pass top_k (at most "
                             f"{MAX_TOP_K})")
        if isinstance(p, _Nested):
            rows = [p.flat[r * num_classes:(r + 1) * num_classes] for r in range(n)]
        else:
            rows = (p.cpu() if _torch_tensor(p) else p).tolist()
        rec["probs"] = [[float(v) for v in row] for row in rows]
    else:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be an integer from 1 to {MAX_TOP_K} (MAX_TOP_K), got "
                             f"{top_k!r}")
        if top_k > num_classes:
            raise ValueError(f"top_k is {top_k} but probs has only {num_classes} classes")
        classes, top = _top_k(p, top_k)
        rec["probs"] = [[float(v) for v in row] for row in top]
        rec["classes"] = [[int(c) for c in row] for row in classes]
        rec["num_classes"] = num_classes
    if ids is not None:
        rec["ids"] = _ids(ids, n)
    return rec
