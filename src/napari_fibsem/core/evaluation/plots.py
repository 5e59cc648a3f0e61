"""Evaluation figures as PNG: distance scatter, distance histogram, accuracy vs threshold.

Built with matplotlib's object API on the Agg canvas (no pyplot, no GUI backend), so the core
stays headless; the CLI opens the saved files when asked to show them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.evaluation.config import threshold_column
from napari_fibsem.core.io.atomic import atomic_path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _found_distances(rows: list[dict[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """checkpoint -> feature -> distances (px) of found points."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        per = out.setdefault(str(r["checkpoint"]), {})
        dist = per.setdefault(str(r["feature"]), [])
        if str(r["found"]).lower() == "true":
            dist.append(float(r["distance_px"]))
    return {c: {f: np.asarray(d, float) for f, d in per.items()} for c, per in out.items()}


def save_eval_plots(
    rows: list[dict[str, Any]], accuracy: list[dict[str, Any]], thresholds: list[float], folder: Path
) -> dict[str, Path]:
    """Write the three evaluation figures into ``folder``; returns name -> path."""
    data = _found_distances(rows)
    checkpoints = list(data)
    features = list(dict.fromkeys(f for per in data.values() for f in per))
    colours = [f"C{i % 10}" for i in range(len(checkpoints))]
    files = {}

    fig = _figure(max(6, 0.6 * len(features) + 2), 4.5)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    width = 0.8 / max(len(checkpoints), 1)
    for i, (ckpt, colour) in enumerate(zip(checkpoints, colours)):
        for j, feat in enumerate(features):
            d = data[ckpt].get(feat, np.empty(0))
            x = j - 0.4 + width * (i + 0.5) + rng.uniform(-width / 3, width / 3, d.size)
            ax.scatter(x, np.maximum(d, 0.1), s=12, color=colour, alpha=0.7, label=ckpt if j == 0 else None)
    ax.set_yscale("log")
    ax.set_xticks(range(len(features)), features, rotation=45, ha="right")
    ax.set_ylabel("distance to label (px, log)")
    for t in thresholds:
        ax.axhline(t, color="0.7", lw=0.8, ls="--")
    ax.set_title("Detected vs labelled: distance per feature")
    ax.legend(fontsize="small")
    files["scatter"] = _save(fig, folder / "distance_scatter.png")

    fig = _figure(6, 4)
    ax = fig.add_subplot()
    all_d = [np.concatenate([*per.values(), np.empty(0)]) for per in data.values()]
    top = max([float(d.max()) for d in all_d if d.size] + [max(thresholds)])
    bins = np.linspace(0, top, 30)
    for ckpt, d, colour in zip(checkpoints, all_d, colours):
        ax.hist(d, bins=bins, histtype="step", lw=1.5, color=colour, label=f"{ckpt} ({d.size} found)")
    ax.set_xlabel("distance to label (px)")
    ax.set_ylabel("points")
    ax.set_title("Distance histogram (found points)")
    ax.legend(fontsize="small")
    files["histogram"] = _save(fig, folder / "distance_histogram.png")

    fig = _figure(6, 4)
    ax = fig.add_subplot()
    ts = sorted(thresholds)
    for ckpt, colour in zip(checkpoints, colours):
        row = next(r for r in accuracy if r["checkpoint"] == ckpt and r["feature"] == "ALL")
        ax.plot(ts, [row[threshold_column(t)] for t in ts], marker="o", color=colour, label=ckpt)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("threshold (px)")
    ax.set_ylabel("share of labelled points within threshold")
    ax.set_title("Accuracy vs threshold (all features; misses count as failures)")
    ax.legend(fontsize="small")
    files["accuracy_plot"] = _save(fig, folder / "accuracy_vs_threshold.png")
    return files
