"""The closed alignment loop on the simulator, measured against its ground truth.

A model is trained on images the simulator renders (:func:`simulator_dataset`: random stage
offsets over several simulated worlds, with their exact masks), then a lamella placed off-centre
in a world it has never seen is centred by :func:`~napari_fibsem.core.automation.workflow.align_feature`:
unsupervised, and supervised with a deliberately wrong model whose detection a scripted person
corrects to the truth. Every step's true offset comes from the simulator's ground-truth mask of
that acquisition, never from the model, so the figures say how well the loop really did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.automation.loop_run import FEATURE, Iteration, LoopRun, describe
from napari_fibsem.core.automation.workflow import (
    StepConfig,
    StepResult,
    ValidationRequest,
    ValidationResult,
    align_feature,
)
from napari_fibsem.core.io.imageio import write_image, write_labels
from napari_fibsem.core.microscope import BeamType, ImageSettings, connect
from napari_fibsem.core.models.base import Prediction
from napari_fibsem.core.synthetic.scene import keypoints_from_mask

__all__ = [
    "FEATURE",
    "LOOP_SETTINGS",
    "GroundTruthValidator",
    "Iteration",
    "LoopRun",
    "ShiftedModel",
    "closed_loop",
    "describe",
    "run_alignment",
    "simulator_dataset",
    "true_point",
]

LOOP_SETTINGS = ImageSettings(resolution=(384, 256), hfw=60e-6, beam="electron")


def simulator_dataset(
    out: str | Path,
    n: int = 48,
    settings: ImageSettings = LOOP_SETTINGS,
    seed: int = 100,
    per_world: int = 4,
    max_offset_m: float = 15e-6,
) -> str:
    """Write ``n`` simulator acquisitions with their ground-truth labels as a training folder.

    Worlds ``seed, seed + 1, ...`` each give ``per_world`` images at uniform random stage
    offsets of up to ``max_offset_m`` in x and y, so the model sees the lamella everywhere in the
    field, as the loop will show it.
    """
    out = Path(out)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = 0
    world = seed
    while written < n:
        sim = connect({"simulator": {"seed": world}})
        home = sim.get_stage_position()
        for _ in range(min(per_world, n - written)):
            dx, dy = rng.uniform(-max_offset_m, max_offset_m, 2)
            sim.move_stage_absolute(home.moved(dx=dx, dy=dy))
            image = sim.acquire_image(settings)
            name = f"sim_w{world:03d}_{written:03d}"
            write_image(out / f"{name}.tif", image.data, image.metadata)
            write_labels(out / "labels" / f"{name}.tif", sim.last_mask(settings.beam))
            written += 1
        sim.disconnect()
        world += 1
    return f"{written} simulator images ({settings.resolution[0]}x{settings.resolution[1]}, {settings.hfw * 1e6:.0f} um field) from {world - seed} worlds"


class ShiftedModel:
    """A model whose masks are moved ``shift_px`` to the right: a deliberately wrong detector."""

    backend = "shifted"

    def __init__(self, model: Any, shift_px: int) -> None:
        self.model, self.shift_px = model, shift_px
        self.class_map = model.class_map

    def predict(self, image: Any) -> Prediction:
        p = self.model.predict(image)
        return Prediction(mask=np.roll(p.mask, self.shift_px, axis=1), probs=None)


class GroundTruthValidator:
    """A scripted person: moves ``feature`` to where the simulator's ground truth puts it."""

    def __init__(self, sim: Any, feature: str = FEATURE, beam: str = "electron") -> None:
        self.sim, self.feature, self.beam = sim, feature, beam
        self.requests = 0

    def __call__(self, request: ValidationRequest) -> ValidationResult:
        self.requests += 1
        x, y = true_point(self.sim, self.feature, self.beam)
        return ValidationResult("accept", request.detected.with_point(self.feature, x, y))


def true_point(sim: Any, feature: str = FEATURE, beam: str = "electron") -> tuple[float, float]:
    """The feature's pixel position in the last ``beam`` acquisition, from the ground-truth mask."""
    points = keypoints_from_mask(sim.last_mask(beam))
    if feature not in points:
        raise ValueError(f"{feature} is not in the simulator's last {beam} image")
    return points[feature]


def _offset_m(point: tuple[float, float], shape: tuple[int, int], pixel_size: float) -> tuple[float, float]:
    h, w = shape
    return (point[0] - (w - 1) / 2) * pixel_size, -(point[1] - (h - 1) / 2) * pixel_size


def run_alignment(
    model: Any,
    *,
    name: str,
    supervised: bool = False,
    engine: Any = None,
    world_seed: int = 0,
    start_offset_m: tuple[float, float] = (-9e-6, 6e-6),
    settings: ImageSettings = LOOP_SETTINGS,
    tolerance_m: float = 1e-6,
    max_iterations: int = 3,
    checkpoint: str = "",
) -> LoopRun:
    """Place the lamella ``start_offset_m`` off-centre in world ``world_seed`` and align it.

    Supervised runs ask a :class:`GroundTruthValidator` at every step.
    """
    sim = connect({"simulator": {"seed": world_seed}})
    sim.move_stage_relative(dx=start_offset_m[0], dy=start_offset_m[1])
    beam = BeamType.of(settings.beam).value
    before = sim.acquire_image(settings)
    shape, ps = before.data.shape, settings.pixel_size
    before_truth = true_point(sim, beam=beam)
    start = math.hypot(*_offset_m(before_truth, shape, ps))
    iterations: list[Iteration] = []

    def record(r: StepResult) -> None:
        truth = _offset_m(true_point(sim, beam=beam), shape, ps)  # the step's own acquisition
        px = r.detected[FEATURE].px if r.detected is not None else None
        detected = r.detected.offset_m(FEATURE) if px is not None else None
        iterations.append(Iteration(truth, detected, r.offset_m, r.moved, r.action, r.reason, px))

    validator = GroundTruthValidator(sim, beam=beam) if supervised else None
    config = StepConfig(name=name, feature=FEATURE, beam=beam, image_settings=settings,
                        supervised=supervised, checkpoint=checkpoint)  # fmt: skip
    kwargs: dict[str, Any] = {"validator": validator} if validator else {}
    align_feature(sim, model, config, engine=engine, tolerance_m=tolerance_m, max_iterations=max_iterations,
                  on_step=record, **kwargs)  # fmt: skip
    after = sim.acquire_image(settings)
    after_truth = true_point(sim, beam=beam)
    final = math.hypot(*_offset_m(after_truth, shape, ps))
    sim.disconnect()
    return LoopRun(name, supervised, start, final, iterations, before, after, before_truth, after_truth,
                   validator.requests if validator else 0, tolerance_m)  # fmt: skip


def closed_loop(
    model_path: str | Path,
    out: str | Path,
    *,
    world_seed: int = 0,
    wrong_by_px: int = 40,
    write: Callable[[str], None] | None = None,
) -> tuple[list[LoopRun], Path]:
    """Both runs (unsupervised; supervised with a model ``wrong_by_px`` off) and their report.

    The engine (``out/engine``) logs every step; the report is ``out/report.md``.
    """
    from napari_fibsem.core.automation.closed_loop_report import write_report
    from napari_fibsem.core.automation.engine import DataEngine
    from napari_fibsem.core.models import load_model

    say = write or (lambda line: None)
    out = Path(out)
    model = load_model(model_path)
    engine = DataEngine(out / "engine")
    runs = []
    for run_name, m, supervised in (
        ("unsupervised", model, False),
        ("supervised", ShiftedModel(model, wrong_by_px), True),
    ):
        run = run_alignment(m, name=run_name, supervised=supervised, engine=engine, world_seed=world_seed,
                            checkpoint=f"{Path(model_path).name}" + (f" shifted {wrong_by_px} px" if supervised else ""))  # fmt: skip
        runs.append(run)
        say(describe(run))
    report = write_report(out, runs, engine)
    return runs, report
