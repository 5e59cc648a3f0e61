"""The end-to-end demo: what the README's main command runs.

Headless (no Qt import) so it runs in CI and on servers. Three parts, each timed:

1. segmentation (:mod:`._segmentation`): a synthetic dataset, checked as a user's would be; a
   U-Net trained from random weights with a recipe that reaches a useful model in about three
   minutes on two CPU cores; the model predicting scenes it has never seen, scored against their labels;
2. the closed alignment loop on the microscope simulator (:mod:`._closed_loop`);
3. the event pipeline (:mod:`._events`): synthetic movies -> extract -> index -> set -> train ->
   predict, with the test precision, recall and F1.

:class:`DemoResult` keeps the dataset folder and the trained models, so a viewer can open on them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MARKER = ".napari-fibsem-demo"


@dataclass
class DemoResult:
    out: Path
    dataset: Path
    test: Path  # the unseen scenes (with their true labels)
    lines: list[str] = field(default_factory=list)
    model: Path | None = None  # the first model: the segmentation U-Net trained on ``dataset``
    mean_fg_iou: float | None = None  # of ``model`` on the unseen scenes
    loop_model: Path | None = None
    loop_report: Path | None = None
    loop_runs: list = field(default_factory=list)  # closed_loop.LoopRun, unsupervised then supervised
    events_root: Path | None = None  # event folders written by extract (with the catalogue)
    event_model: Path | None = None
    event_performance: Path | None = None  # performance.yaml of the event model
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part, and "total"

    def report(self) -> str:
        return "\n".join([f"demo outputs in {self.out.resolve()}", *self.lines])


def _fresh_folder(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists():
            raise ValueError(f"{out}: exists and is not a previous demo output; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).touch()


def clock(seconds: float) -> str:
    """``m:ss``."""
    s = round(seconds)
    return f"{s // 60}:{s % 60:02d}"


def run_demo(
    out: str | Path,
    n: int = 60,
    size: tuple[int, int] = (512, 768),
    seed: int = 0,
    epochs: int = 44,
    write: Callable[[str], None] | None = None,
    loop_scenes: int = 48,
    loop_epochs: int = 5,
    event_movies: int = 16,
    event_epochs: int = 24,
    unseen: int = 24,
) -> DemoResult:
    """Segmentation (``n`` scenes, ``epochs``; 0 skips training and scoring), the closed loop
    (``loop_scenes`` simulator images, ``loop_epochs``; 0 skips it) and the event pipeline
    (``event_movies`` movies, ``event_epochs``; 0 skips training and prediction).

    ``write`` receives progress lines as the steps run (the CLI prints them).
    """
    from napari_fibsem.demo._closed_loop import closed_loop_part
    from napari_fibsem.demo._events import events_part
    from napari_fibsem.demo._segmentation import segmentation_part

    say = write or (lambda line: None)
    out = Path(out)
    _fresh_folder(out)
    result = DemoResult(out, out / "dataset", out / "unseen")

    def step(line: str) -> None:
        result.lines.append(line)
        say(line)

    started = time.perf_counter()
    parts = [("segmentation", lambda: segmentation_part(result, n, size, epochs, seed, unseen, step, say))]
    if loop_epochs > 0:
        parts.append(
            ("closed loop", lambda: closed_loop_part(result, loop_scenes, loop_epochs, seed, step, say))
        )
    parts.append(("events", lambda: events_part(result, event_movies, event_epochs, seed, step, say)))
    for i, (name, run) in enumerate(parts, start=1):
        t0 = time.perf_counter()
        run()
        result.timings[name] = time.perf_counter() - t0
        step(f"[part {i}, {name}: {clock(result.timings[name])}]")
    result.timings["total"] = time.perf_counter() - started
    step(f"[demo total: {clock(result.timings['total'])}]")
    return result
