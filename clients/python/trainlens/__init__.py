"""trainlens client: send training metrics to a trainlens server.

Standard library only. ``log`` only appends to a buffer (a few
microseconds); a background thread sends the buffer in columnar batches,
each with an ``Idempotency-Key``, so a retry never duplicates points. When
the server cannot be reached, batches wait in memory (up to
``max_memory_points``) and then go to a spool file in the record format
(``$TRAINLENS_DIR``, default ``./trainlens-spool/``) that ``trainlens sync``
or ``python -m trainlens sync`` uploads later; ``mode="offline"`` writes only
the spool. Every run has a ``run_key``, so a re-sent spool lands in the same
run and re-sent points replace themselves: nothing is lost or duplicated.
NaN and infinities are sent as the strings the server expects, so a
diverging run keeps its NaN.

    import trainlens
    with trainlens.init(project="mnist", name="baseline", config={"lr": 0.1}) as run:
        for step in range(1000):
            run.log({"train/loss": loss, "lr": lr}, step=step)
        run.log({"val/loss": val_loss, "val/acc": val_acc}, step=step)
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from typing import Any, Dict, Iterable, List, Optional, Sequence

from . import spool as _spool

__all__ = ["init", "Run", "TrainlensError", "ServerUnreachable"]
__version__ = "0.2.0"

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_DIR = "trainlens-spool"


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

    def request(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
                retries: Optional[int] = None) -> Any:
        """Sends JSON, returns the decoded answer."""
        data = None if body is None else json.dumps(body, allow_nan=False).encode()
        text = self.send(method, path, data, {"content-type": "application/json", **(headers or {})}, retries)
        return json.loads(text) if text else None

    def send(self, method: str, path: str, data: Optional[bytes], headers: Dict[str, str],
             retries: Optional[int] = None) -> str:
        """Sends with retries (connection errors, 5xx, 429: backoff from 0.5 s,
        doubling); a 4xx is the caller's mistake and raises at once."""
        retries = self.retries if retries is None else retries
        hdrs = {"user-agent": "trainlens-python/" + __version__, **headers}
        delay = 0.5
        last = ""
        for attempt in range(retries + 1):
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
            if attempt < retries:
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise ServerUnreachable(f"{method} {path}: server unreachable after {retries + 1} attempts: {last}")


class _Batch:
    """What one flush took out of the buffer: scalar columns and records,
    sent with one idempotency key (kept across retries)."""

    __slots__ = ("key", "series", "records", "points")

    def __init__(self, series: List[Dict[str, Any]], records: List[Dict[str, Any]]) -> None:
        self.key = uuid.uuid4().hex
        self.series = series
        self.records = records
        self.points = sum(len(s["steps"]) for s in series) + len(records)


def _note(msg: str) -> None:
    print(f"trainlens: {msg}", file=sys.stderr, flush=True)


# Runs not finished yet, finished (or flushed) at interpreter exit.
_live: "weakref.WeakSet[Run]" = weakref.WeakSet()
_crashed = False


def _excepthook(tp, value, tb) -> None:  # pragma: no cover - process exit
    global _crashed
    _crashed = True
    _previous_excepthook(tp, value, tb)


_previous_excepthook = sys.excepthook
sys.excepthook = _excepthook


@atexit.register
def _at_exit() -> None:
    for run in list(_live):
        try:
            run.finish("crashed" if _crashed else "finished")
        except BaseException as e:  # never turn an exit into a traceback
            _note(f"run {run.run_key}: {e}")


class Run:
    """One training run. Create it with :func:`init`.

    ``id`` and ``url`` are None while the server has not been reached (the
    run then lives in the spool under its ``run_key``)."""

    def __init__(
        self,
        http: Optional[_Http],
        create: Dict[str, Any],
        info: Optional[Dict[str, Any]],
        spool_path: str,
        flush_every: float,
        max_buffer: int,
        max_memory_points: int,
        heartbeat_every: float,
        exit_wait: float,
    ) -> None:
        self._http = http
        self._create = create
        self.run_key: str = create["run_key"]
        self.name: str = create["name"]
        self.project: str = create["project"]
        self.id: Optional[str] = None
        self.url: Optional[str] = None
        if info is not None:
            self._created(info)
        self.spool = _spool.Spool(spool_path, {"type": "run", **create})
        self._lock = threading.Lock()
        self._columns: Dict[str, Dict[str, List[Any]]] = {}
        self._recs: List[Dict[str, Any]] = []
        self._buffered = 0
        self._max_buffer = max_buffer
        self._max_memory = max_memory_points
        self._flush_every = flush_every
        self._heartbeat_every = heartbeat_every
        self._exit_wait = exit_wait
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._error: Optional[BaseException] = None
        self._sending = threading.RLock()
        # Batches not yet acknowledged, oldest first.
        self._pending: List[_Batch] = []
        self._retry_at = 0.0
        self._backoff = 0.5
        self.finished = False
        self._thread = threading.Thread(target=self._loop, name="trainlens-flush", daemon=True)
        self._thread.start()
        _live.add(self)

    def _created(self, info: Dict[str, Any]) -> None:
        self.id = info["id"]
        self.url = info.get("url", "")
        self.name = info.get("name", self.name)

    @property
    def offline(self) -> bool:
        return self._http is None

    # -- logging -----------------------------------------------------------
    def log(self, metrics: Dict[str, float], step: int, time_: Optional[float] = None) -> None:
        """Records scalar values at ``step`` (a non-negative integer). Never
        waits for the network."""
        if self._error is not None:
            err, self._error = self._error, None
            raise TrainlensError(f"an earlier batch failed: {err}")
        if type(step) is not int:
            if not isinstance(step, int) or isinstance(step, bool):
                raise ValueError(f"step must be a non-negative integer, got {step!r}")
            step = int(step)
        if step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        t = time.time() if time_ is None else float(time_)
        with self._lock:
            columns = self._columns
            for key, value in metrics.items():
                col = columns.get(key)
                if col is None:
                    col = columns[key] = {"key": key, "steps": [], "values": [], "times": []}
                col["steps"].append(step)
                v = float(value)
                col["values"].append(v if v - v == 0.0 else _value(v))
                col["times"].append(t)
            self._buffered += len(metrics)
            full = self._buffered >= self._max_buffer
        if full:
            self._wake.set()

    def log_record(self, record: Dict[str, Any]) -> None:
        """Queues one record of the record format (``docs/record-format.md``):
        a histogram, model, dataset, image, tensor or predictions line."""
        if "type" not in record:
            raise ValueError("a record needs a type")
        json.dumps(record, allow_nan=False)  # refuse what cannot be sent, here
        with self._lock:
            self._recs.append(record)
            self._buffered += 1

    def log_image(self, key: str, data: Any, step: int, layout: str = "auto") -> None:
        """Records an image: PNG bytes, or an array/tensor of shape [H, W],
        [C, H, W] (a feature map: a few channels of one sample) or [H, W, C]
        (``layout`` "auto" reads a 3-d array as [H, W, C] when its last
        dimension is 3 or 4 and its first is not; "chw" or "hwc" say so)."""
        from . import records

        self.log_record(records.image(key, data, step, layout=layout))

    def log_tensor(self, key: str, data: Any, step: int, sample: Optional[str] = None) -> None:
        """Records (a bounded sample of) a tensor, e.g. a weight matrix for
        the weight heatmap."""
        from . import records

        self.log_record(records.tensor(key, data, step, sample=sample))

    def log_predictions(self, split: str, labels: Any, probs: Any, step: int, ids: Any = None,
                        top_k: Optional[int] = None) -> None:
        """Records per-sample predictions of ``split``: true ``labels`` and
        class ``probs`` (the label-error analysis reads them)."""
        from . import records

        self.log_record(records.predictions(split, labels, probs, step, ids=ids, top_k=top_k))

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
        self.log_record({"type": "histogram", "step": step, "key": key, "edges": list(edges or []),
                         "counts": list(counts or []), "nonfinite": nonfinite})

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
        self.log_record(rec)

    def log_dataset(self, split: str, x: Any = None, y: Any = None, **fields: Any) -> None:
        """Records a dataset split summary: from arrays ``x`` (and labels
        ``y``), numpy or torch, or a torch ``Dataset``/``DataLoader`` of
        ``(x, y)`` items (sampling at most 10,000), or from given ``fields``
        (n, n_features, missing, feature_mean, feature_std, class_counts)."""
        if x is not None:
            from . import torch as tl_torch
            fields = {**tl_torch.dataset_summary(x, y), **fields}
        self.log_record({"type": "dataset", "split": split, **fields})

    # -- sending -----------------------------------------------------------
    def _take(self) -> None:
        """Moves the buffer into a pending batch (under the send lock)."""
        with self._lock:
            series = list(self._columns.values())
            recs = self._recs
            self._columns, self._recs, self._buffered = {}, [], 0
        if series or recs:
            self._pending.append(_Batch(series, recs))

    def _send(self, batch: _Batch, retries: Optional[int]) -> None:
        assert self._http is not None and self.id is not None
        if batch.series:
            self._http.request("POST", f"/api/v1/runs/{self.id}/scalars", {"series": batch.series},
                               headers={"idempotency-key": batch.key}, retries=retries)
            batch.series = []
        if batch.records:
            body = "".join(json.dumps(r, allow_nan=False) + "\n" for r in batch.records).encode()
            self._http.send("POST", f"/api/v1/runs/{self.id}/records", body,
                            {"content-type": "application/x-ndjson", "idempotency-key": batch.key + "-r"},
                            retries=retries)
            batch.records = []

    def _connect(self, retries: Optional[int]) -> None:
        assert self._http is not None
        if self.id is None:
            self._created(self._http.request("POST", "/api/v1/runs", self._create, retries=retries))

    def _pump(self, retries: Optional[int]) -> None:
        """Sends what is pending, oldest first; spools what cannot wait.

        Raises ServerUnreachable (the batches stay pending) or
        TrainlensError for a batch the server refused (it is dropped)."""
        with self._sending:
            self._take()
            try:
                if self._http is None:
                    raise ServerUnreachable("offline")
                self._connect(retries)
                while self._pending:
                    batch = self._pending[0]
                    try:
                        self._send(batch, retries)
                    except ServerUnreachable:
                        raise
                    except TrainlensError:
                        self._pending.pop(0)
                        raise
                    self._pending.pop(0)
            finally:
                self._bound_memory()

    def _bound_memory(self) -> None:
        """Spools the oldest pending batches beyond the memory bound (all of
        them when offline)."""
        limit = 0 if self._http is None else self._max_memory
        held = sum(b.points for b in self._pending)
        while self._pending and held > limit:
            batch = self._pending.pop(0)
            held -= batch.points
            self.spool.write(batch.series, batch.records)

    def flush(self) -> None:
        """Sends everything buffered now (blocks until the server has it).

        A batch the server could not be reached for is kept and sent again,
        with the same idempotency key, by the next flush (raising
        ServerUnreachable); one it refused (bad input) is dropped and
        reported. Offline, writes the buffer to the spool."""
        if self._http is None:
            with self._sending:
                self._take()
                self._bound_memory()
            return
        self._pump(None)

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self._flush_every)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = time.monotonic()
            if self._http is not None and now < self._retry_at:
                with self._sending:  # disconnected: only keep memory bounded
                    self._take()
                    self._bound_memory()
                continue
            try:
                self._pump(0)
                self._backoff = 0.5
                if self._http is not None and now - last_beat >= self._heartbeat_every:
                    self._http.request("POST", f"/api/v1/runs/{self.id}/heartbeat", retries=0)
                    last_beat = now
            except ServerUnreachable:
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, 30.0)
            except BaseException as e:  # reported on the next log() or finish()
                self._error = e

    def finish(self, status: str = "finished", step: Optional[int] = None) -> None:
        """Sends what is left and marks the run finished (or failed/crashed).

        Waits at most ``exit_wait`` seconds for the server; what it could not
        send stays in the spool file (with the final status), and a line on
        stderr says where and how to upload it."""
        if self.finished:
            return
        self.finished = True
        _live.discard(self)
        self._stop.set()
        self._wake.set()
        self._thread.join(self._exit_wait)
        deadline = time.monotonic() + self._exit_wait
        error: Optional[BaseException] = self._error
        sent = False
        if self._http is not None:
            saved_timeout = self._http.timeout
            while True:
                left = deadline - time.monotonic()
                self._http.timeout = max(0.5, min(saved_timeout, left))
                try:
                    self._pump(0)
                    sent = True
                    break
                except ServerUnreachable:
                    if time.monotonic() + self._backoff >= deadline:
                        break
                    time.sleep(self._backoff)
                    self._backoff = min(self._backoff * 2, 5.0)
                except TrainlensError as e:
                    error = e
            self._http.timeout = saved_timeout
        with self._sending:
            self._take()
            self._pending, left_over = [], self._pending
            for batch in left_over:
                self.spool.write(batch.series, batch.records)
            body: Dict[str, Any] = {"status": status}
            if step is not None:
                body["step"] = step
            if sent and not self.spool.exists():
                try:
                    self._http.request("POST", f"/api/v1/runs/{self.id}/finish", body, retries=1)  # type: ignore
                except ServerUnreachable:
                    sent = False
            if not sent or self.spool.exists():
                self.spool.write_end(status, step)
                self._upload_spool()
        if error is not None:
            raise TrainlensError(f"a batch failed while the run was logging: {error}")

    def _upload_spool(self) -> None:
        """Uploads this run's spool when the server is there; else says where
        it is."""
        path = self.spool.path
        if self._http is not None:
            try:
                info = _spool.upload(self._http, path)
                if self.id is None:
                    self._created(info)
                return
            except ServerUnreachable:
                pass
        where = "offline" if self._http is None else "the server could not be reached"
        _note(f"{where}: run {self.run_key!r} is in {path}; upload it with "
              f"`trainlens sync {path}` or `python -m trainlens sync {path}`")

    def findings(self, status: str = "open") -> List[Dict[str, Any]]:
        """The run's findings as the server has diagnosed them so far."""
        if self._http is None or self.id is None:
            raise TrainlensError("the run has not reached the server yet")
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
    mode: str = "online",
    run_key: Optional[str] = None,
    dir: Optional[str] = None,
    flush_every: float = 2.0,
    max_buffer: int = 10_000,
    max_memory_points: int = 1_000_000,
    heartbeat_every: float = 30.0,
    timeout: float = 10.0,
    retries: int = 2,
    exit_wait: float = 10.0,
) -> Run:
    """Starts a run and returns it.

    Online (the default), the run is created on the server (``server`` or
    ``$TRAINLENS_SERVER``, default http://127.0.0.1:8080); when the server
    cannot be reached it is created later, and meanwhile points wait in
    memory and then in the spool. ``mode="offline"`` (or
    ``$TRAINLENS_MODE=offline``) writes only the spool file
    ``<dir>/<run_key>.jsonl`` (``dir`` or ``$TRAINLENS_DIR``, default
    ``./trainlens-spool``). ``run_key`` names the run for re-sends (default:
    a random one); a run created again with the same key in the same project
    is the same run."""
    mode = os.environ.get("TRAINLENS_MODE", mode)
    if mode not in ("online", "offline"):
        raise ValueError(f"mode must be 'online' or 'offline', got {mode!r}")
    key = run_key or uuid.uuid4().hex
    create: Dict[str, Any] = {"project": project, "name": name or f"run-{key[:8]}",
                              "config": config or {}, "tags": tags or [], "run_key": key}
    json.dumps(create, allow_nan=False)
    spool_dir = dir or os.environ.get("TRAINLENS_DIR") or DEFAULT_DIR
    path = os.path.join(spool_dir, _spool.file_name(project, key))
    http = None
    info = None
    if mode == "online":
        http = _Http(server or os.environ.get("TRAINLENS_SERVER") or DEFAULT_SERVER, timeout, retries)
        try:
            info = http.request("POST", "/api/v1/runs", create)
        except ServerUnreachable as e:
            _note(f"{e}; logging continues, unsent data goes to {path}")
    return Run(http, create, info, path, flush_every, max_buffer, max_memory_points, heartbeat_every,
               exit_wait)
