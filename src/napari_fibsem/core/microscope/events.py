"""Structured event log of microscope operations: one JSON object per line.

Every public operation of a :class:`~napari_fibsem.core.microscope.base.Microscope` writes one
record (``time``, ``op``, ``args``, ``ok``, ``result`` or ``error``, ``duration_s``, and the stage
position re-read after a failure), so a run can be analysed afterwards with nothing but
``json.loads`` per line. Images are logged as a summary, never as pixels. The file is opened in
append mode per record, so a crash loses at most the record being written.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.microscope.structures import now_iso, to_dict


def jsonable(obj: Any) -> Any:
    """Plain JSON data for anything an operation takes or returns."""
    from napari_fibsem.core.io.imageio import FibsemImage  # light; avoids a cycle at import

    if isinstance(obj, FibsemImage):
        m = obj.metadata
        return {"image": list(obj.data.shape), "dtype": str(obj.data.dtype), "pixel_size": m.pixel_size, "beam": m.beam_type}
    if isinstance(obj, np.ndarray):
        return {"array": list(obj.shape), "dtype": str(obj.dtype)}
    if isinstance(obj, BaseException):
        return {"type": type(obj).__name__, "message": str(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):  # pydantic
        return jsonable(obj.model_dump(mode="json"))
    data = to_dict(obj)
    if isinstance(data, dict):
        return {str(k): jsonable(v) for k, v in data.items()}
    if isinstance(data, list):
        return [jsonable(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    if data is None or isinstance(data, (str, int, float, bool)):
        return data
    return repr(data)


class EventLog:
    """Append-only JSON-lines log at ``path`` (None: keep records in memory only).

    The last ``keep`` records are also held in memory (``log.records``) for tests and widgets.
    """

    def __init__(self, path: str | Path | None = None, keep: int = 1000) -> None:
        self.path = Path(path) if path is not None else None
        self.records: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def write(self, op: str, args: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Record one operation; ``fields`` (``result``, ``error``, ``duration_s``, ...) go in as JSON."""
        record = {"time": now_iso(), "op": op, "args": jsonable(args or {})}
        record.update({k: jsonable(v) for k, v in fields.items()})
        line = json.dumps(record, allow_nan=False)
        with self._lock:
            self.records.append(record)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
        return record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self.records))


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All records of a log file; a damaged line raises ``ValueError`` naming its line number."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON event record ({e})") from None
    return out
