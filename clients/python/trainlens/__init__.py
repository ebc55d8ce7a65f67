"""trainlens client: send training metrics to a trainlens server.

Standard library only. Points are buffered and sent in columnar batches from
a background thread; every batch carries an ``Idempotency-Key`` so a retry
after a network error never duplicates points. NaN and infinities are sent as
the strings the server expects, so a diverging run keeps its NaN.

    import trainlens
    with trainlens.init(project="mnist", name="baseline", config={"lr": 0.1}) as run:
        for step in range(1000):
            run.log({"train/loss": loss, "lr": lr}, step=step)
        run.log({"val/loss": val_loss, "val/acc": val_acc}, step=step)
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence

__all__ = ["init", "Run", "TrainlensError", "ServerUnreachable"]
__version__ = "0.1.0"

DEFAULT_SERVER = "http://127.0.0.1:8080"


class TrainlensError(Exception):
    """The server refused a request (bad input), or could not be reached."""


class ServerUnreachable(TrainlensError):
    """No answer (or only 5xx/429) after every retry; the data is kept."""


def _value(v: float) -> Any:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


class _Http:
    def __init__(self, server: str, timeout: float, retries: int) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.retries = retries

    def request(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None) -> Any:
        """Sends JSON, returns the decoded answer."""
        data = None if body is None else json.dumps(body, allow_nan=False).encode()
        text = self.send(method, path, data, {"content-type": "application/json", **(headers or {})})
        return json.loads(text) if text else None

    def send(self, method: str, path: str, data: Optional[bytes], headers: Dict[str, str]) -> str:
        """Sends with retries (connection errors, 5xx, 429: backoff from 0.5 s,
        doubling); a 4xx is the caller's mistake and raises at once."""
        hdrs = {"user-agent": "trainlens-python/" + __version__, **headers}
        delay = 0.5
        last = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.server + path, data=data, method=method, headers=hdrs)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.read().decode()
            except urllib.error.HTTPError as e:
                text = e.read().decode(errors="replace")
                if e.code < 500 and e.code != 429:
                    try:
                        err = json.loads(text)["error"]
                        msg = err["message"] + (f" (field {err['field']})" if err.get("field") else "")
                    except (ValueError, KeyError, TypeError):
                        msg = text
                    raise TrainlensError(f"{method} {path}: {e.code}: {msg}") from None
                last = f"{e.code}: {text[:200]}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise ServerUnreachable(f"{method} {path}: server unreachable after {self.retries + 1} attempts: {last}")


class Run:
    """One training run. Create it with :func:`init`."""

    def __init__(
        self,
        http: _Http,
        info: Dict[str, Any],
        flush_every: float,
        max_buffer: int,
        heartbeat_every: float,
    ) -> None:
        self._http = http
        self.id: str = info["id"]
        self.url: str = info.get("url", "")
        self.name: str = info.get("name", "")
        self._lock = threading.Lock()
        self._columns: Dict[str, Dict[str, List[Any]]] = {}
        self._buffered = 0
        self._max_buffer = max_buffer
        self._flush_every = flush_every
        self._heartbeat_every = heartbeat_every
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._sending = threading.Lock()
        # Batches not yet acknowledged: (idempotency key, series).
        self._pending: List[Any] = []
        self._thread = threading.Thread(target=self._loop, name="trainlens-flush", daemon=True)
        self._thread.start()
        self.finished = False

    # -- logging -----------------------------------------------------------
    def log(self, metrics: Dict[str, float], step: int, time_: Optional[float] = None) -> None:
        """Records scalar values at ``step`` (a non-negative integer)."""
        if self._error is not None:
            raise TrainlensError(f"an earlier batch failed: {self._error}")
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        t = time.time() if time_ is None else float(time_)
        flush = False
        with self._lock:
            for key, value in metrics.items():
                col = self._columns.setdefault(key, {"key": key, "steps": [], "values": [], "times": []})
                col["steps"].append(step)
                col["values"].append(_value(value))
                col["times"].append(t)
                self._buffered += 1
            flush = self._buffered >= self._max_buffer
        if flush:
            self.flush()

    def log_histogram(
        self,
        key: str,
        step: int,
        values: Optional[Iterable[float]] = None,
        bins: int = 30,
        edges: Optional[Sequence[float]] = None,
        counts: Optional[Sequence[int]] = None,
        nonfinite: int = 0,
    ) -> None:
        """Records a histogram: from raw ``values`` (binned here, non-finite
        values counted apart) or from ready ``edges`` and ``counts`` (and the
        ``nonfinite`` values left out of them)."""
        if values is not None:
            finite = []
            for v in values:
                v = float(v)
                if math.isfinite(v):
                    finite.append(v)
                else:
                    nonfinite += 1
            if finite:
                lo, hi = min(finite), max(finite)
                if hi == lo:
                    hi = lo + 1e-12
                width = (hi - lo) / bins
                edges = [lo + i * width for i in range(bins)] + [hi]
                counts = [0] * bins
                for v in finite:
                    counts[min(int((v - lo) / width), bins - 1)] += 1
            else:
                edges, counts = [], []
        self._records([{"type": "histogram", "step": step, "key": key, "edges": list(edges or []),
                        "counts": list(counts or []), "nonfinite": nonfinite}])

    def log_model(self, model: Any = None, loss: Optional[str] = None,
                  optimizer: Any = None, loss_fn: Any = None, **extra: Any) -> None:
        """Records the model summary (the record format's `model` line).

        ``model`` is a ``torch.nn.Module`` — then the layers, their
        activations, the loss (from ``loss_fn``) and the optimizer (a
        ``torch.optim.Optimizer``) are read from the objects — or a list of
        layer dicts, with ``loss`` a name and ``optimizer`` a dict."""
        if hasattr(model, "named_modules"):
            from . import torch as tl_torch
            rec: Dict[str, Any] = {"type": "model",
                                   **tl_torch.model_record(model, loss_fn=loss_fn, optimizer=optimizer),
                                   **extra}
        else:
            layers = extra.pop("layers", model)
            rec = {"type": "model", "layers": layers or [], **extra}
            if optimizer is not None:
                rec["optimizer"] = optimizer
        if loss is not None:
            rec["loss"] = loss
        self._records([rec])

    def log_dataset(self, split: str, x: Any = None, y: Any = None, **fields: Any) -> None:
        """Records a dataset split summary: from arrays ``x`` (and labels
        ``y``), numpy or torch, or a torch ``Dataset``/``DataLoader`` of
        ``(x, y)`` items (sampling at most 10,000), or from given ``fields``
        (n, n_features, missing, feature_mean, feature_std, class_counts)."""
        if x is not None:
            from . import torch as tl_torch
            fields = {**tl_torch.dataset_summary(x, y), **fields}
        self._records([{"type": "dataset", "split": split, **fields}])

    def _records(self, records: List[Dict[str, Any]]) -> None:
        body = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records).encode()
        headers = {"content-type": "application/x-ndjson", "idempotency-key": uuid.uuid4().hex}
        self._http.send("POST", f"/api/v1/runs/{self.id}/records", body, headers)

    # -- sending -----------------------------------------------------------
    def flush(self) -> None:
        """Sends everything buffered now (blocks until the server has it).

        A batch the server could not be reached for is kept and sent again,
        with the same idempotency key, by the next flush; one it refused (bad
        input) is dropped and reported."""
        with self._sending:
            with self._lock:
                series = list(self._columns.values())
                self._columns = {}
                self._buffered = 0
            if series:
                self._pending.append((uuid.uuid4().hex, series))
            while self._pending:
                key, batch = self._pending[0]
                try:
                    self._http.request("POST", f"/api/v1/runs/{self.id}/scalars", {"series": batch},
                                       headers={"idempotency-key": key})
                except ServerUnreachable:
                    raise
                except TrainlensError:
                    self._pending.pop(0)
                    raise
                self._pending.pop(0)

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(self._flush_every):
            try:
                self.flush()
                if time.monotonic() - last_beat >= self._heartbeat_every:
                    self._http.request("POST", f"/api/v1/runs/{self.id}/heartbeat")
                    last_beat = time.monotonic()
            except BaseException as e:  # reported on the next log() or finish()
                self._error = e

    def finish(self, status: str = "finished", step: Optional[int] = None) -> None:
        """Sends what is left and marks the run finished (or failed/crashed)."""
        if self.finished:
            return
        self._stop.set()
        self._thread.join()
        self.flush()
        body: Dict[str, Any] = {"status": status}
        if step is not None:
            body["step"] = step
        self._http.request("POST", f"/api/v1/runs/{self.id}/finish", body)
        self.finished = True
        if self._error is not None:
            raise TrainlensError(f"a batch failed while the run was logging: {self._error}")

    def findings(self, status: str = "open") -> List[Dict[str, Any]]:
        """The run's findings as the server has diagnosed them so far."""
        return self._http.request("GET", f"/api/v1/runs/{self.id}/findings?status={status}")["findings"]

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish("failed" if exc_type is not None else "finished")


def init(
    name: Optional[str] = None,
    project: str = "default",
    config: Optional[Dict[str, Any]] = None,
    tags: Optional[List[str]] = None,
    server: Optional[str] = None,
    flush_every: float = 2.0,
    max_buffer: int = 10_000,
    heartbeat_every: float = 30.0,
    timeout: float = 30.0,
    retries: int = 5,
) -> Run:
    """Creates a run on the server (``server`` or ``$TRAINLENS_SERVER``, default
    http://127.0.0.1:8080) and returns it."""
    http = _Http(server or os.environ.get("TRAINLENS_SERVER") or DEFAULT_SERVER, timeout, retries)
    body: Dict[str, Any] = {"project": project, "config": config or {}, "tags": tags or []}
    if name is not None:
        body["name"] = name
    info = http.request("POST", "/api/v1/runs", body)
    return Run(http, info, flush_every, max_buffer, heartbeat_every)
