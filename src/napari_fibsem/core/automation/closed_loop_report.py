"""The closed-loop report: before/after images with the true and acted-on points, offsets per step.

Markdown with PNG figures (matplotlib's Agg canvas, no GUI), written atomically under ``out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.automation.engine import format_summary
from napari_fibsem.core.automation.loop_run import FEATURE, LoopRun, describe
from napari_fibsem.core.evaluation.plots import _figure, _save
from napari_fibsem.core.io.atomic import atomic_write_text


def _um(v: tuple[float, float] | None) -> str:
    return "-" if v is None else f"({v[0] * 1e6:+.2f}, {v[1] * 1e6:+.2f})"


Point = tuple[float, float]


def _panel(ax: Any, image: Any, title: str, truth: Point | None, detected: Point | None = None) -> None:
    data = np.asarray(image.data)
    h, w = data.shape
    ax.imshow(data, cmap="gray")
    ax.plot(
        [(w - 1) / 2], [(h - 1) / 2], marker="+", color="yellow", markersize=16, mew=2, label="image centre"
    )
    if truth is not None:
        ax.plot(*truth, marker="o", mfc="none", color="lime", markersize=10, mew=2, label=f"true {FEATURE}")
    if detected is not None:
        ax.plot(*detected, marker="x", color="red", markersize=10, mew=2, label="model's detection")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _figure_for(run: LoopRun, path: Path) -> Path:
    fig = _figure(8, 2.9)
    axes = fig.subplots(1, 2)
    first = run.iterations[0].detected_px if run.iterations else None
    _panel(axes[0], run.before, f"before: {run.start_m * 1e6:.2f} um off-centre", run.before_truth_px, first)
    _panel(axes[1], run.after, f"after {run.moves} move(s): {run.final_m * 1e6:.2f} um", run.after_truth_px)
    axes[0].legend(loc="lower left", fontsize=7)
    return _save(fig, path)


def write_report(out: str | Path, runs: list[LoopRun], engine: Any) -> Path:
    """``out/report.md`` plus one ``<run>.png`` per run; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Closed-loop alignment on the simulator", "",
             f"Task: detect {FEATURE} in the electron image and stable-move it to the image centre. True offsets are "
             "read from the simulator's ground-truth mask of each acquisition (+x right, +y up, um).", ""]  # fmt: skip
    for run in runs:
        figure = _figure_for(run, out / f"{run.name}.png")
        lines += [f"## {run.name}", "", describe(run), "", f"![{run.name}]({figure.name})", "",
                  "| step | true offset | detected offset | detection error | acted on | action |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for i, it in enumerate(run.iterations, 1):
            err = "-" if it.detection_error_m is None else f"{it.detection_error_m * 1e6:.2f}"
            action = it.action + (f" ({it.reason})" if it.reason else "") + ("" if it.moved else ", no move")
            lines.append(f"| {i} | {_um(it.true_offset_m)} | {_um(it.detected_offset_m)} | {err} | "
                         f"{_um(it.acted_offset_m)} | {action} |")  # fmt: skip
        lines.append("")
    lines += ["## Data engine", "", f"Every step is logged in `{Path(engine.root).name}/detections.csv`:", "", "```",
              *format_summary(engine.summary()), "```", ""]  # fmt: skip
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
