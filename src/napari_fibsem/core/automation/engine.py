"""The data engine: every validated detection is logged, and the log becomes the next training data.

Layout under a root the user chooses (never inside the installed package): ``images/`` (the frame
with its metadata), ``masks/`` (the model's mask) and an append-only ``detections.csv`` with one
row per feature: detected and corrected positions, the correction in pixels and metres,
``corrected`` (beyond a tolerance), checkpoint, beam, step, timestamp.

Appends never rewrite the file: each batch of rows is one ``write`` on a file opened with
``O_APPEND`` under an exclusive lock (``fcntl`` where available, plus a process-wide lock), so
concurrent writers interleave whole lines and a writer killed mid-append leaves at most one
partial last line, which readers skip.
"""

from __future__ import annotations

import csv
import io
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.detection import DetectedFeatures
from napari_fibsem.core.io.imageio import FibsemImage, write_image, write_labels
from napari_fibsem.core.io.keypoints import Keypoint, write_keypoints

LOG_NAME = "detections.csv"
COLUMNS = (
    "timestamp", "image", "step", "beam", "checkpoint", "feature", "found",
    "det_x", "det_y", "x", "y", "dx_px", "dy_px", "distance_px", "distance_m", "pixel_size", "corrected",
)  # fmt: skip
_LOCK = threading.Lock()


@contextmanager
def _locked_append(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with _LOCK:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # Windows: the thread lock still serialises this process
                pass
            yield fd
    finally:
        os.close(fd)


class DataEngine:
    """Log detections and corrections under ``root``; summarise and export them."""

    def __init__(self, root: str | Path, tolerance_px: float = 2.0) -> None:
        self.root = Path(root).expanduser()
        self.tolerance_px = float(tolerance_px)
        package = Path(__file__).resolve().parents[2]  # napari_fibsem/
        if self.root.resolve() == package or package in self.root.resolve().parents:
            raise ValueError(f"{self.root}: the data engine must not write inside the installed package")
        for sub in ("images", "masks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / LOG_NAME

    # -- logging --------------------------------------------------------------------------------
    def log(
        self,
        image: FibsemImage,
        detected: DetectedFeatures,
        corrected: DetectedFeatures | None = None,
        *,
        checkpoint: str = "",
        step: str = "",
        beam: str | None = None,
        corrected_mask: np.ndarray | None = None,
    ) -> str:
        """Save the image and mask and append one row per feature; returns the image's file name.

        ``corrected_mask`` (a person's edit of the model's mask) goes to ``corrected_masks/``, and
        ``export`` prefers it as the starting label.
        """
        now = datetime.now(timezone.utc)
        name = f"{now.strftime('%Y%m%dT%H%M%S%f')}_{step or 'detection'}.tif".replace(" ", "_")
        write_image(self.root / "images" / name, image.data, image.metadata)
        if detected.mask is not None:
            write_labels(self.root / "masks" / name, detected.mask)
        if corrected_mask is not None:
            write_labels(self.root / "corrected_masks" / name, np.asarray(corrected_mask, dtype=np.uint8))
        final = corrected or detected
        beam = beam or (image.metadata.beam_type or "")
        rows = []
        for f in detected:
            c = final[f.name] if f.name in final.features else f
            row: dict[str, Any] = {k: "" for k in COLUMNS}
            row.update(timestamp=now.isoformat(), image=name, step=step, beam=beam, checkpoint=checkpoint,
                       feature=f.name, found=f.found, pixel_size=detected.pixel_size)  # fmt: skip
            if f.px is not None:
                row.update(det_x=f.px[0], det_y=f.px[1])
            if c.px is not None:
                row.update(x=c.px[0], y=c.px[1])
            if f.px is not None and c.px is not None:
                dx, dy = c.px[0] - f.px[0], c.px[1] - f.px[1]
                dist = math.hypot(dx, dy)
                row.update(dx_px=dx, dy_px=dy, distance_px=dist, distance_m=dist * detected.pixel_size,
                           corrected=dist > self.tolerance_px)  # fmt: skip
            else:
                row["corrected"] = f.px is None and c.px is not None  # a person placed a missed feature
            rows.append(row)
        self._append(rows)
        return name

    def _append(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writerows({k: _fmt(v) for k, v in r.items()} for r in rows)
        with _locked_append(self.log_path) as fd:
            size = os.fstat(fd).st_size
            head = b""
            if size == 0:
                head = (",".join(COLUMNS) + "\n").encode()
            elif _last_byte(self.log_path, size) != b"\n":
                head = b"\n"  # a writer died mid-line: end that line so ours stays whole
            os.write(fd, head + buf.getvalue().encode())

    # -- reading and curating -------------------------------------------------------------------
    def rows(self) -> list[dict[str, str]]:
        """All complete rows; a line cut short (a writer killed mid-append) is skipped."""
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        return [r for r in csv.DictReader(io.StringIO(text)) if None not in r and None not in r.values()]

    def summary(self) -> list[dict[str, Any]]:
        """Per feature: detections, found, corrected, correction rate, median correction (px)."""
        out = []
        rows = self.rows()
        for feature in dict.fromkeys(r["feature"] for r in rows):
            sel = [r for r in rows if r["feature"] == feature]
            corrected = [r for r in sel if r["corrected"] == "True"]
            dists = [float(r["distance_px"]) for r in sel if r["distance_px"]]
            out.append({
                "feature": feature,
                "n": len(sel),
                "found": sum(r["found"] == "True" for r in sel),
                "corrected": len(corrected),
                "correction_rate": len(corrected) / len(sel),
                "median_correction_px": float(np.median(dists)) if dists else float("nan"),
            })  # fmt: skip
        return out

    def export(self, out: str | Path) -> dict[str, Path]:
        """Write the two curated sets under ``out``.

        ``train/``: images with at least one corrected feature, as a labelling folder whose
        ``labels/`` start from the model's mask (a person fixes them in the labelling widget);
        ``test_keypoints.csv`` (+ ``test/`` images): features nobody had to correct, as ground
        truth that ``napari-fibsem evaluate`` reads.
        """
        import shutil

        out = Path(out)
        rows = self.rows()
        corrected_images = {r["image"] for r in rows if r["corrected"] == "True"}
        corrected_images |= {p.name for p in (self.root / "corrected_masks").glob("*.tif")}
        train, test = out / "train", out / "test"
        for folder in (train / "labels", test):
            folder.mkdir(parents=True, exist_ok=True)
        for name in sorted(corrected_images):
            shutil.copy2(self.root / "images" / name, train / name)
            for masks in ("corrected_masks", "masks"):
                if (self.root / masks / name).exists():
                    shutil.copy2(self.root / masks / name, train / "labels" / name)
                    break
        points = []
        for r in rows:
            if r["image"] in corrected_images or r["found"] != "True" or not r["x"]:
                continue
            if not (test / r["image"]).exists():
                shutil.copy2(self.root / "images" / r["image"], test / r["image"])
            points.append(Keypoint(r["image"], r["feature"], float(r["x"]), float(r["y"]),
                                   float(r["pixel_size"]) if r["pixel_size"] else None, False, "engine"))  # fmt: skip
        csv_path = write_keypoints(out / "test_keypoints.csv", points)
        return {"train": train, "test": test, "test_keypoints": csv_path}


def format_summary(rows: list[dict[str, Any]]) -> list[str]:
    """:meth:`DataEngine.summary` as aligned text lines (the CLI and the closed-loop report)."""
    lines = [f"{'feature':<28}{'n':>6}{'found':>7}{'corrected':>11}{'rate':>8}{'median px':>11}"]
    for r in rows:
        lines.append(f"{r['feature']:<28}{r['n']:>6}{r['found']:>7}{r['corrected']:>11}"
                     f"{100 * r['correction_rate']:>7.1f}%{r['median_correction_px']:>11.1f}")  # fmt: skip
    return lines


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1)


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)
