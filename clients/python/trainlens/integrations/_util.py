"""Helpers shared by the framework integrations (no framework imports)."""

from __future__ import annotations

import enum
import math
import numbers
from typing import Any, Dict, Mapping, Optional


def numeric(logs: Optional[Mapping[str, Any]]) -> Dict[str, float]:
    """The numeric entries of a framework's logs, under their own names.

    Numbers (Python, numpy) and one-element tensors or arrays are kept as
    floats (NaN and infinities included); strings, booleans, ``None`` and
    anything else are left out."""
    out: Dict[str, float] = {}
    for key, value in (logs or {}).items():
        if isinstance(value, bool):
            continue
        if not isinstance(value, numbers.Real) and hasattr(value, "item"):
            try:
                value = value.item()
            except (ValueError, RuntimeError, TypeError, AttributeError):
                continue
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` made JSON-safe for a run's config: mappings, sequences and
    scalars kept; enums by value; non-finite floats and other objects as
    strings."""
    if depth > 20:
        return str(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return jsonable(value.value, depth + 1)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    if hasattr(value, "item"):
        try:
            return jsonable(value.item(), depth + 1)
        except (ValueError, RuntimeError, TypeError, AttributeError):
            pass
    return str(value)
