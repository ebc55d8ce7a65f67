"""The offline spool: a run's unsent data as a recording in the record
format (``docs/record-format.md``), and its upload (``python -m trainlens
sync PATH…``, the same as ``trainlens sync PATH…``).

A spool file starts with the run's ``run`` line, carrying its ``run_key``;
then scalar and other record lines as they were spooled, and an ``end``
line when the run finished. Uploading sends it to ``POST /api/v1/import`` in
chunks of whole lines, each starting with the ``run`` line: the server
writes every chunk into the run with that key (creating it the first time),
and a re-sent point replaces itself, so uploading a spool twice, or again
after an interrupted upload, duplicates nothing. After a complete upload a
``<file>.synced`` marker records the size that was sent; a later sync skips
the file unless it has grown.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

CHUNK_BYTES = 4 << 20
MARKER = ".synced"


def file_name(project: str, run_key: str) -> str:
    """A file name for a run's spool: project and key, filesystem-safe."""
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "_", s)[:100]  # noqa: E731
    return f"{safe(project)}--{safe(run_key)}.jsonl"


class Spool:
    """Appends a run's records to its spool file, created on first use."""

    def __init__(self, path: str, run_line: Dict[str, Any]) -> None:
        self.path = path
        self._run_line = run_line
        self.points = 0

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def _append(self, lines: List[str]) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fresh = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", encoding="utf-8") as f:
            if fresh:
                f.write(json.dumps(self._run_line, allow_nan=False) + "\n")
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())

    def write(self, series: Sequence[Dict[str, Any]], records: Sequence[Dict[str, Any]]) -> None:
        """Appends scalar columns (as ``scalar`` lines) and records."""
        lines = []
        for s in series:
            key = json.dumps(s["key"])
            for step, value, t in zip(s["steps"], s["values"], s["times"]):
                lines.append(f'{{"type":"scalar","key":{key},"step":{step},"value":{json.dumps(value)},'
                             f'"time":{t!r}}}\n')
        lines.extend(json.dumps(r, allow_nan=False) + "\n" for r in records)
        if lines:
            self._append(lines)
            self.points += len(lines)

    def write_end(self, status: str, step: Optional[int]) -> None:
        end: Dict[str, Any] = {"type": "end", "status": status}
        if step is not None:
            end["step"] = step
        self._append([json.dumps(end) + "\n"])


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)  # every member
    return raw


def _chunks(lines: List[bytes], limit: int) -> Iterator[List[bytes]]:
    chunk: List[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield chunk


def upload(http: Any, path: str, chunk_bytes: int = CHUNK_BYTES) -> Dict[str, Any]:
    """Uploads one spool file; returns the run (as the server answers).
    Raises ValueError for a file that is not a spool, and the client's
    errors for the server's refusals or absence."""
    size = os.path.getsize(path)
    lines = [line + b"\n" for line in _read(path).split(b"\n") if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty")
    try:
        first = json.loads(lines[0])
    except ValueError:
        first = None
    if not isinstance(first, dict) or first.get("type") != "run" or not first.get("run_key"):
        raise ValueError(f"{path}: not a spool: the first line must be a run line with a run_key "
                         "(without one, every upload would make another run; use `trainlens import`)")
    info: Dict[str, Any] = {}
    rest = lines[1:] or [b""]
    for chunk in _chunks(rest, chunk_bytes):
        body = lines[0] + b"".join(chunk)
        text = http.send("POST", "/api/v1/import", body, {"content-type": "application/x-ndjson"})
        info = json.loads(text)
    with open(path + MARKER, "w", encoding="utf-8") as f:
        json.dump({"size": size, "id": info.get("id"), "url": info.get("url")}, f)
    return info


def synced(path: str) -> bool:
    """True when the file was uploaded whole and has not grown since."""
    try:
        with open(path + MARKER, encoding="utf-8") as f:
            return json.load(f).get("size") == os.path.getsize(path)
    except (OSError, ValueError, AttributeError):
        return False


def spool_files(paths: Sequence[str]) -> List[str]:
    """The spool files among ``paths`` (a directory stands for its
    ``*.jsonl`` and ``*.jsonl.gz`` files)."""
    out: List[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(os.path.join(p, n) for n in sorted(os.listdir(p))
                       if n.endswith(".jsonl") or n.endswith(".jsonl.gz"))
        else:
            out.append(p)
    return out


def sync(paths: Sequence[str], server: Optional[str] = None, force: bool = False,
         chunk_bytes: int = CHUNK_BYTES) -> int:
    """Uploads the spool files in ``paths``; prints one line per file;
    returns the number of files that failed."""
    from . import DEFAULT_SERVER, TrainlensError, _Http

    http = _Http(server or os.environ.get("TRAINLENS_SERVER") or DEFAULT_SERVER, 30.0, 3)
    failed = 0
    files = spool_files(paths)
    if not files:
        print("no spool files found", file=sys.stderr)
        return 1
    for path in files:
        if not force and synced(path):
            print(f"{path}: already synced")
            continue
        try:
            info = upload(http, path, chunk_bytes)
            print(f"{path}: run {info.get('id')} at {info.get('url')}")
        except (OSError, ValueError, TrainlensError) as e:
            failed += 1
            print(f"{path}: {e}", file=sys.stderr)
    return failed
