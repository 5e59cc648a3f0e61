"""Keypoints CSV: labelled feature points, detection logs and evaluation ground truth.

One row per point: ``filename, feature, x, y, pixel_size, corrected, source`` plus free columns.
Pixel coordinates, origin top-left, y down. OpenFIBSEM's ``px.x, px.y, pixelsize`` names are
accepted on read so their labelled data works unchanged.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.atomic import atomic_write_text

COLUMNS = ("filename", "feature", "x", "y", "pixel_size", "corrected", "source")
_ALIASES = {"px.x": "x", "px.y": "y", "pixelsize": "pixel_size", "pixel_size_m": "pixel_size"}
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


class KeypointsError(FibsemError, ValueError):
    """A keypoints CSV is malformed; the message names the file, row and column."""


@dataclass
class Keypoint:
    filename: str
    feature: str
    x: float
    y: float
    pixel_size: float | None = None
    corrected: bool = False
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        out = {
            "filename": self.filename,
            "feature": self.feature,
            "x": repr(float(self.x)),
            "y": repr(float(self.y)),
            "pixel_size": "" if self.pixel_size is None else repr(float(self.pixel_size)),
            "corrected": str(bool(self.corrected)),
            "source": self.source,
        }
        out.update(self.extra)
        return out


def read_keypoints(path: str | Path) -> list[Keypoint]:
    """Read a keypoints CSV (ours or OpenFIBSEM's); errors name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise KeypointsError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise KeypointsError(f"{path}: not a text CSV file") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [_ALIASES.get(h.strip(), h.strip()) for h in (reader.fieldnames or [])]
    missing = [c for c in ("filename", "feature", "x", "y") if c not in header]
    if missing:
        raise KeypointsError(f"{path}: missing column(s) {missing}; found {reader.fieldnames or []}")
    if len(set(header)) != len(header):
        raise KeypointsError(f"{path}: duplicate columns in header {reader.fieldnames}")
    reader.fieldnames = header
    points = []
    known = {f.name for f in fields(Keypoint)} - {"extra"}
    for line, raw in enumerate(reader, start=2):
        if None in raw:
            raise KeypointsError(f"{path}, line {line}: more values than columns")
        points.append(_parse_row(raw, known, f"{path}, line {line}"))
    return points


def _parse_row(raw: dict[str, str], known: set[str], where: str) -> Keypoint:
    def number(col: str, optional: bool = False) -> float | None:
        val = (raw.get(col) or "").strip()
        if not val and optional:
            return None
        try:
            out = float(val)
        except ValueError:
            raise KeypointsError(f"{where}: column {col!r} is not a number: {val!r}") from None
        if not math.isfinite(out):
            raise KeypointsError(f"{where}: column {col!r} is not finite: {val!r}")
        return out

    corrected = (raw.get("corrected") or "").strip().lower()
    if corrected not in _TRUE | _FALSE:
        raise KeypointsError(f"{where}: column 'corrected' must be true/false, got {corrected!r}")
    if not (raw.get("filename") or "").strip() or not (raw.get("feature") or "").strip():
        raise KeypointsError(f"{where}: 'filename' and 'feature' must not be empty")
    return Keypoint(
        filename=raw["filename"].strip(),
        feature=raw["feature"].strip(),
        x=number("x"),  # type: ignore[arg-type]
        y=number("y"),  # type: ignore[arg-type]
        pixel_size=number("pixel_size", optional=True),
        corrected=corrected in _TRUE,
        source=(raw.get("source") or "").strip(),
        extra={k: v for k, v in raw.items() if k and k not in known and v not in ("", None)},
    )


def write_keypoints(path: str | Path, points: Iterable[Keypoint]) -> Path:
    """Write all ``points`` atomically (our column names; free columns after them)."""
    rows = [p.row() for p in points]
    extra_cols: list[str] = []
    for r in rows:
        extra_cols += [k for k in r if k not in COLUMNS and k not in extra_cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra_cols], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return Path(path)
