"""Helpers shared by the framework integrations (no framework imports)."""

from __future__ import annotations

import enum
import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, TypedDict

import trainlens


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


class RunArgs(TypedDict, total=False):
    """An integration's run options, all keyword arguments: ``name``,
    ``config``, ``tags``, ``server`` go to :func:`trainlens.init` (with the
    ``project``); ``run`` uses an existing run instead."""

    name: Optional[str]
    config: Optional[Dict[str, Any]]
    tags: Optional[List[str]]
    server: Optional[str]
    run: Optional[trainlens.Run]


class _RunOwner:
    """An integration's run options (``project``, ``name``, ``config``,
    ``tags``, ``server``: for :func:`trainlens.init`) and its run: the
    ``run`` passed in (left to its owner), else the one :meth:`start` creates,
    which this object owns and :meth:`finish` finishes."""

    def __init__(
        self,
        project: str = "default",
        name: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None,
        tags: Optional[List[str]] = None,
        server: Optional[str] = None,
        run: Optional[trainlens.Run] = None,
    ) -> None:
        self.project = project
        self.name = name
        self.config = dict(config or {})
        self.tags = list(tags or [])
        self.server = server
        self.run = run
        #: Whether :meth:`start` created ``run`` (only such a run is finished here).
        self.owns = False
        #: Whether :meth:`finish` has finished ``run``.
        self.finished = False

    @property
    def startable(self) -> bool:
        """No run yet, or the one started here is finished: a new one may start."""
        return self.run is None or self.finished

    def start(self, config: Dict[str, Any], name: Optional[str] = None) -> trainlens.Run:
        """Creates and owns a new run: ``config`` under the ``config`` option
        (which wins on a shared key), named ``name`` or else the ``name``
        option."""
        self.run = trainlens.init(name=self.name if name is None else name, project=self.project,
                                  config={**config, **jsonable(self.config)},
                                  tags=self.tags, server=self.server)
        self.owns = True
        self.finished = False
        return self.run

    def finish(self, status: str = "finished") -> bool:
        """Finishes the run as ``status`` if it was started here and is not
        finished yet; says whether it did."""
        if self.run is None or not self.owns or self.finished:
            return False
        self.run.finish(status)
        self.finished = True
        return True


def _option(attr: str) -> Any:
    def get(self: Any) -> Any:
        return getattr(self._owner, attr)

    def set(self: Any, value: Any) -> None:
        setattr(self._owner, attr, value)

    return property(get, set, doc=f"The ``{attr}`` of the run options (see :class:`_RunOwner`).")


class _RunOptions:
    """The run options and ``run`` of a callback, read and set as its own
    attributes, kept in its ``_owner`` (a :class:`_RunOwner`)."""

    _owner: _RunOwner
    project = _option("project")
    name = _option("name")
    config = _option("config")
    tags = _option("tags")
    server = _option("server")
    run = _option("run")
