"""Keypoint evaluation: how far each checkpoint's detected features land from labelled points.

``napari-fibsem evaluate --config eval.yaml`` and the training widget's "evaluate" run this. It
reads a keypoints CSV (ours or OpenFIBSEM's), loads every checkpoint once, predicts each image
once per checkpoint, locates the labelled features and writes ``eval.csv`` (one row per image x
feature x checkpoint), ``accuracy.csv`` (fraction within each pixel threshold, miss rate), plots
and a one-page report. A "checkpoint" may also be a folder of predicted masks from another tool.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.detection import CATALOGUE, detect_features
from napari_fibsem.core.evaluation.config import (
    EVAL_COLUMNS,
    CheckpointSpec,
    EvalConfig,
    EvalResult,
    EvaluationStopped,
    load_eval_config,
    parse_eval_config,
    threshold_column,
)
from napari_fibsem.core.evaluation.plots import save_eval_plots
from napari_fibsem.core.evaluation.report import write_report
from napari_fibsem.core.io.atomic import atomic_write_text
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import ImageIOError, read_image, read_labels
from napari_fibsem.core.io.keypoints import Keypoint, read_keypoints
from napari_fibsem.core.progress import ProgressCallback

# the config types live in ``config`` (so plots and report need not import this module); they stay
# importable from here, where callers have always found them
__all__ = [
    "EVAL_COLUMNS",
    "CheckpointSpec",
    "EvalConfig",
    "EvalResult",
    "EvaluationStopped",
    "ProgressCallback",
    "accuracy_table",
    "evaluate_checkpoints",
    "find_image",
    "load_eval_config",
    "parse_eval_config",
    "read_eval_csv",
    "run_evaluation",
    "threshold_column",
    "write_csv",
]

def find_image(images_path: Path, filename: str) -> Path | None:
    """``images_path/filename``, also without an extension (OpenFIBSEM writes bare names)."""
    p = images_path / filename
    if p.is_file():
        return p
    for suffix in (".tif", ".tiff", ".TIF", ".TIFF"):
        q = images_path / f"{filename}{suffix}"
        if q.is_file():
            return q
    return None


def _group(points: list[Keypoint], features: list[str] | None) -> dict[str, list[Keypoint]]:
    groups: dict[str, list[Keypoint]] = {}
    for p in points:
        if features is None or p.feature in features:
            groups.setdefault(p.filename, []).append(p)
    return groups


def evaluate_checkpoints(
    cfg: EvalConfig, on_progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None
) -> tuple[list[dict[str, Any]], list[Path]]:
    """Detect every labelled feature with every checkpoint; one row per image x feature x checkpoint.

    Also returns the detection pictures written when the config asks for them. ``should_stop`` is
    polled before each image; True raises :class:`EvaluationStopped`.
    """
    points = read_keypoints(cfg.data_path)
    unknown = sorted({p.feature for p in points} - set(CATALOGUE))
    if unknown:
        raise ValueError(f"{cfg.data_path}: feature(s) {unknown} are not in the catalogue ({sorted(CATALOGUE)})")
    groups = _group(points, cfg.features)
    if not groups:
        raise ValueError(f"{cfg.data_path}: no keypoints to evaluate" + (f" for {cfg.features}" if cfg.features else ""))
    images = {name: find_image(cfg.images_path, name) for name in groups}
    missing = [n for n, p in images.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"{cfg.data_path}: {len(missing)} image(s) not found in {cfg.images_path}: {missing[:5]}"
            + (" ..." if len(missing) > 5 else "")
        )
    rows: list[dict[str, Any]] = []
    plots: list[Path] = []
    total, done = len(groups) * len(cfg.checkpoints), 0
    for spec in cfg.checkpoints:
        source = _MaskSource(spec, cfg.device)
        for name, gt in groups.items():
            if should_stop is not None and should_stop():
                raise EvaluationStopped(
                    f"stopped after {done} of {total} image evaluations; no tables, plots or report written"
                )
            image = read_image(images[name])  # type: ignore[arg-type]
            new, found = _evaluate_image(cfg, spec.name or "", source, name, image, gt)
            rows += new
            if found is not None and (cfg.save_det_plot or cfg.show_det_plot):
                plots.append(_save_det_plot(cfg, spec.name or "", name, image.data, found, gt, source.class_map))
            done += 1
            if on_progress is not None:
                on_progress(done, total)
    return rows, plots


def _save_det_plot(cfg, checkpoint, name, image, found, gt, class_map) -> Path:
    from napari_fibsem.core.detection import draw_features
    from napari_fibsem.core.detection.batch import save_png

    out = cfg.save_path / "det_plots" / checkpoint / f"{Path(name).stem}.png"
    save_png(out, draw_features(image, found, class_map, truth={p.feature: (p.x, p.y) for p in gt}))
    return out


def _is_mask_folder(path: Path) -> bool:
    """A plain folder of label TIFFs (``napari-fibsem predict`` output), not an nnU-Net results folder."""
    from napari_fibsem.core.io.imageio import list_tiffs
    from napari_fibsem.core.models.formats import is_nnunet_folder

    return path.is_dir() and not is_nnunet_folder(path) and bool(list_tiffs(path))


class _MaskSource:
    """Class masks from a loaded model (loaded once) or from a folder of predicted label TIFFs."""

    def __init__(self, spec: CheckpointSpec, device: str | None) -> None:
        if spec.path is not None and _is_mask_folder(spec.path):
            spec = spec.model_copy(update={"masks": spec.path, "path": None})
        self.spec = spec
        if spec.path is not None:
            from napari_fibsem.core.models import load_model

            self.model = load_model(spec.path, device=device)
            self.class_map = self.model.class_map
        else:
            self.model = None
            folder = spec.masks
            yaml_dir = folder if (folder / "classes.yaml").exists() else folder.parent  # type: ignore[operator,union-attr]
            self.class_map = ClassMap.for_folder(yaml_dir)

    def mask(self, name: str, image: np.ndarray) -> tuple[np.ndarray | None, str]:
        if self.model is not None:
            return self.model.predict(image).mask, ""
        path = find_image(self.spec.masks, name)  # type: ignore[arg-type]
        if path is None:
            return None, f"no mask for {name} in {self.spec.masks}"
        try:
            return read_labels(path, self.class_map, shape=image.shape), ""
        except ImageIOError as e:
            raise ImageIOError(f"checkpoint {self.spec.name!r}: {e}") from None


def _evaluate_image(
    cfg: EvalConfig, checkpoint: str, source: _MaskSource, name: str, image: Any, gt: list[Keypoint]
) -> tuple[list[dict[str, Any]], Any]:
    mask, why = source.mask(name, image.data)
    pixel_size = next((p.pixel_size for p in gt if p.pixel_size), None) or image.metadata.pixel_size
    found = None
    if mask is not None:
        found = detect_features(
            None,
            mask=mask,
            features=sorted({p.feature for p in gt}),
            pixel_size=pixel_size or 1.0,  # metres are left blank below when the size is unknown
            class_map=source.class_map,
            min_size=cfg.min_size,
            filter=cfg.filter,
        )
    rows = []
    for p in gt:
        res = found[p.feature] if found is not None else None
        row: dict[str, Any] = {c: "" for c in EVAL_COLUMNS}
        ps = p.pixel_size or image.metadata.pixel_size
        row.update(checkpoint=checkpoint, filename=name, feature=p.feature, gt_x=p.x, gt_y=p.y,
                   pixel_size=ps if ps else "", corrected=p.corrected)  # fmt: skip
        if res is None or res.px is None:
            row.update(found=False, reason=why if res is None else res.reason)
        else:
            dx, dy = res.px[0] - p.x, res.px[1] - p.y
            dist = math.hypot(dx, dy)
            row.update(found=True, det_x=res.px[0], det_y=res.px[1], dx_px=dx, dy_px=dy, distance_px=dist,
                       distance_m=dist * ps if ps else "")  # fmt: skip
        rows.append(row)
    return rows, found


def accuracy_table(rows: list[dict[str, Any]], thresholds: list[float]) -> list[dict[str, Any]]:
    """Per checkpoint and feature (and ``ALL``): points, found, miss rate, distances, accuracy@t.

    Accuracy at ``t`` is the share of *all* labelled points detected within ``t`` pixels, so a
    missed feature counts against a checkpoint exactly like a far-off one.
    """
    out = []
    checkpoints = list(dict.fromkeys(r["checkpoint"] for r in rows))
    for ckpt in checkpoints:
        mine = [r for r in rows if r["checkpoint"] == ckpt]
        features = list(dict.fromkeys(r["feature"] for r in mine))
        for feature in ["ALL", *features]:
            sel = mine if feature == "ALL" else [r for r in mine if r["feature"] == feature]
            dist = np.array([float(r["distance_px"]) for r in sel if _truthy(r["found"])], dtype=float)
            n = len(sel)
            row: dict[str, Any] = {
                "checkpoint": ckpt,
                "feature": feature,
                "n": n,
                "found": int(dist.size),
                "miss_rate": (n - dist.size) / n if n else float("nan"),
                "mean_px": float(dist.mean()) if dist.size else float("nan"),
                "median_px": float(np.median(dist)) if dist.size else float("nan"),
            }
            for t in thresholds:
                row[threshold_column(t)] = float((dist <= t).sum() / n) if n else float("nan")
            out.append(row)
    return out


def _truthy(v: Any) -> bool:
    return v is True or str(v).strip().lower() == "true"


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | tuple[str, ...]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _fmt(v) for k, v in r.items()} for r in rows)
    atomic_write_text(path, buf.getvalue())
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def read_eval_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of an ``eval.csv`` written earlier (for ``run_eval: false``)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read the earlier evaluation ({e.strerror}); set run_eval: true") from None
    if rows and set(EVAL_COLUMNS) - set(rows[0]):
        raise ValueError(f"{path}: not an eval.csv (missing columns {sorted(set(EVAL_COLUMNS) - set(rows[0]))})")
    return rows


def run_evaluation(
    cfg: EvalConfig, on_progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None
) -> EvalResult:
    """Everything the config asks for: evaluate (or re-read), tables, plots, report.

    ``on_progress(done, total)`` runs after each image x checkpoint; ``should_stop`` returning True
    raises :class:`EvaluationStopped` before any table is written.
    """
    save = cfg.save_path
    plots: list[Path] = []
    if cfg.run_eval:
        rows, plots = evaluate_checkpoints(cfg, on_progress, should_stop)
    else:
        rows = read_eval_csv(save / "eval.csv")
    save.mkdir(parents=True, exist_ok=True)  # only now: bad input leaves no empty output folder behind
    result = EvalResult(rows, accuracy_table(rows, cfg.thresholds), cfg.thresholds, det_plots=plots)
    if cfg.run_eval:
        result.files["eval"] = write_csv(save / "eval.csv", rows, EVAL_COLUMNS)
    acc_cols = ["checkpoint", "feature", "n", "found", "miss_rate", "mean_px", "median_px"]
    result.files["accuracy"] = write_csv(
        save / "accuracy.csv", result.accuracy, acc_cols + [threshold_column(t) for t in cfg.thresholds]
    )
    if cfg.plot_eval and (cfg.save_eval_plot or cfg.show_eval_plot):
        result.files.update(save_eval_plots(rows, result.accuracy, cfg.thresholds, save))
    result.files.update(write_report(cfg, result))
    return result
