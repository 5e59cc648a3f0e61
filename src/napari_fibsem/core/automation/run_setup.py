"""Assemble and run a supervised task from a few choices: microscope, model, task, data-engine folder.

What the Run dock (and a script) needs to start a run without writing Python: a small registry of
tasks by the name a person picks, the microscope from ``"simulator"`` or a configuration YAML, the
model from its checkpoint, and :class:`SupervisedRun`, a generator that yields
:class:`RunProgress` between steps (a napari worker shows them and can stop it there) and returns
a :class:`RunSummary`. Validation stays a callback (:mod:`~napari_fibsem.core.automation.workflow`), so the
same run is unsupervised, scripted, or answered at the napari pop-up through a
:class:`~napari_fibsem.core.automation.workflow.ValidationBroker`. The choices are remembered in a small
JSON file (:func:`save_settings`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, field_validator

from napari_fibsem.core.automation.workflow import (
    StepConfig,
    StepResult,
    ValidationBroker,
    Validator,
    WorkflowCancelled,
    auto_accept,
    ends_alignment,
    iter_align,
)
from napari_fibsem.core.io.atomic import atomic_write_text

SIMULATOR = "simulator"
SIMULATOR_START_OFFSET_M = (-9e-6, 6e-6)  # the demo world's lamella starts this far off-centre
CORRECTION_PX = 2.0  # a person's move of a point beyond this counts as a correction (as the engine's)


@dataclass(frozen=True)
class TaskSpec:
    """One task a person can run: find ``feature`` in ``beam`` images and centre it by ``move``."""

    feature: str
    beam: str = "electron"
    move: Literal["stable", "manipulator", "none"] = "stable"
    hfw_m: float = 60e-6
    resolution: tuple[int, int] = (768, 512)  # (width, height)
    step: str = "align"  # the engine log's step column

    def step_config(self, supervised: bool, checkpoint: str = "") -> StepConfig:
        from napari_fibsem.core.microscope import ImageSettings

        settings = ImageSettings(resolution=self.resolution, hfw=self.hfw_m, beam=self.beam)
        return StepConfig(name=self.step, feature=self.feature, beam=self.beam, move=self.move,
                          supervised=supervised, image_settings=settings, checkpoint=checkpoint)  # fmt: skip


TASKS: dict[str, TaskSpec] = {
    "align lamella (LamellaCentre)": TaskSpec("LamellaCentre", step="align_lamella"),
}
"""Task name (as the Run dock lists it) -> :class:`TaskSpec`; trench, undercut, liftout come later."""


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {list(TASKS)}") from None


def default_engine_dir() -> Path:
    """Where detections are logged unless the person picks another folder (never the package)."""
    return Path.home() / "napari-fibsem" / "data-engine"


class RunSetup(BaseModel):
    """Everything a run needs, as a person chose it (and as :func:`save_settings` remembers it)."""

    microscope: str = SIMULATOR  # "simulator" or a microscope configuration YAML
    checkpoint: str = ""
    task: str = next(iter(TASKS))
    supervised: bool = True
    engine_dir: str = str(default_engine_dir())
    max_iterations: int = 3
    tolerance_m: float = 1e-6

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; known tasks: {list(TASKS)}")
        return v


def settings_path() -> Path:
    """The remembered choices: under ``$NAPARI_FIBSEM_CACHE`` when set (tests), else the user config dir."""
    env = os.environ.get("NAPARI_FIBSEM_CACHE")
    if env:
        return Path(env) / "run_settings.json"
    import platformdirs

    return Path(platformdirs.user_config_dir("napari-fibsem")) / "run_settings.json"


def load_settings() -> RunSetup:
    """The last run's choices; defaults when there are none or the file is unreadable."""
    try:
        return RunSetup.model_validate_json(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError):
        return RunSetup()


def save_settings(setup: RunSetup) -> Path:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, setup.model_dump_json(indent=2))
    return path


def describe_microscope(source: str) -> str:
    if source == SIMULATOR:
        dx, dy = SIMULATOR_START_OFFSET_M
        return f"simulator (lamella {math.hypot(dx, dy) * 1e6:.0f} µm off-centre)"
    return f"microscope from {Path(source).name}"


def open_microscope(source: str) -> Any:
    """Connect the simulator (its lamella placed off-centre, so there is work to do) or the
    microscope that a configuration YAML describes (errors name the file and the key)."""
    from napari_fibsem.core.microscope import connect

    if source == SIMULATOR:
        microscope = connect({"simulator": {"seed": 0}})
        microscope.move_stage_relative(dx=SIMULATOR_START_OFFSET_M[0], dy=SIMULATOR_START_OFFSET_M[1])
        return microscope
    return connect(Path(source))


@dataclass(frozen=True)
class RunProgress:
    """Between steps: ``iteration`` of at most ``iterations`` (0 while setting up), and what happened."""

    iteration: int
    iterations: int
    message: str
    step: StepResult | None = None


@dataclass
class RunSummary:
    """How the run ended and what it did; :meth:`lines` is what the docks show."""

    state: Literal["finished", "not converged", "skipped", "halted", "stopped"]
    feature: str
    steps: list[StepResult] = field(default_factory=list)
    engine_log: Path | None = None
    reason: str = ""
    tolerance_m: float = 1e-6

    @property
    def iterations(self) -> int:
        return len(self.steps)

    @property
    def moves(self) -> int:
        return sum(r.moved for r in self.steps)

    @property
    def corrections(self) -> int:
        return sum(_corrected(r, self.feature) for r in self.steps)

    @property
    def final_offset_m(self) -> tuple[float, float] | None:
        """The offset the last step measured (and, when it accepted, moved away)."""
        return next((r.offset_m for r in reversed(self.steps) if r.offset_m is not None), None)

    def lines(self) -> list[str]:
        final = self.final_offset_m
        if not self.steps:
            where = "no iteration completed"
        elif final is None:
            where = f"{self.feature} was never placed"
        else:
            where = f"{self.feature} was {math.hypot(*final) * 1e6:.2f} µm from the centre at the last step"
        if self.engine_log is None:
            log = "engine log: none"
        elif self.engine_log.exists():
            log = f"engine log: {self.engine_log}"
        else:
            log = f"nothing logged (engine folder: {self.engine_log.parent})"
        return [
            f"Run {self.state}" + (f": {self.reason}" if self.reason else ""),
            f"{self.iterations} iteration(s), {self.moves} move(s), {self.corrections} correction(s) by a person",
            where,
            log,
        ]


def _corrected(r: StepResult, feature: str) -> bool:
    if r.detected is None or r.final is None or feature not in r.final.features:
        return False
    before, after = r.detected[feature].px, r.final[feature].px
    if before is None or after is None:
        return after is not None
    return math.dist(before, after) > CORRECTION_PX


class SupervisedRun:
    """One run of ``setup``; :meth:`run` is the worker's generator and :meth:`stop` is safe at any time."""

    def __init__(self, setup: RunSetup, validator: Validator = auto_accept) -> None:
        self.setup = setup
        self.task = get_task(setup.task)
        self.validator = validator
        self.cancel = threading.Event()
        self.microscope: Any = None

    def stop(self) -> None:
        """Stop before the next acquisition or move; a validation being waited for is cancelled."""
        self.cancel.set()
        if isinstance(self.validator, ValidationBroker):
            self.validator.cancel()

    def run(self) -> Generator[RunProgress, None, RunSummary]:
        from napari_fibsem.core.automation.engine import DataEngine
        from napari_fibsem.core.models import load_model

        s, n = self.setup, self.setup.max_iterations + 1
        if not s.checkpoint:
            raise ValueError("no model chosen: pick a checkpoint file first")
        engine = DataEngine(s.engine_dir)
        summary = RunSummary("stopped", self.task.feature, engine_log=engine.log_path, tolerance_m=s.tolerance_m)
        yield RunProgress(0, n, f"connecting to the {describe_microscope(s.microscope)}…")
        self.microscope = open_microscope(s.microscope)
        try:
            yield RunProgress(0, n, f"loading the model {Path(s.checkpoint).name}…")
            model = load_model(s.checkpoint)
            config = self.task.step_config(s.supervised, checkpoint=Path(s.checkpoint).name)
            steps = iter_align(self.microscope, model, config, self.validator, engine, s.tolerance_m,
                               s.max_iterations, self.cancel)  # fmt: skip
            for i in range(1, n + 1):
                yield RunProgress(i - 1, n, f"iteration {i}: imaging and detecting {self.task.feature}…")
                if self.cancel.is_set():
                    raise WorkflowCancelled("stopped between steps")
                r = next(steps)
                summary.steps.append(r)
                yield RunProgress(i, n, describe_step(r, i), r)
                if ends_alignment(r, s.tolerance_m):
                    break
        except WorkflowCancelled:
            summary.reason = "Stop pressed; nothing moved after it"
            return summary
        finally:
            self.microscope.disconnect()
        _conclude(summary)
        return summary


def describe_step(r: StepResult, i: int) -> str:
    """One line of the step log."""
    if r.offset_m is None:
        return f"iteration {i}: {r.action}, no move ({r.reason})"
    dx, dy = r.offset_m
    did = "moved" if r.moved else "did not move"
    extra = f" ({r.reason})" if r.reason else ""
    return f"iteration {i}: {r.action}, offset {dx * 1e6:+.2f}, {dy * 1e6:+.2f} µm; {did}{extra}"


def _conclude(summary: RunSummary) -> None:
    last = summary.steps[-1] if summary.steps else None
    if last is None:
        summary.state, summary.reason = "halted", "no step ran"
    elif last.action == "skip":
        summary.state, summary.reason = "skipped", "the person skipped the detection"
    elif last.action == "stop":
        summary.state, summary.reason = "halted", last.reason
    elif last.offset_m is not None and math.hypot(*last.offset_m) <= summary.tolerance_m:
        summary.state = "finished"
        summary.reason = f"{summary.feature} within {summary.tolerance_m * 1e6:.1f} µm of the centre"
    else:
        summary.state, summary.reason = "not converged", "the iterations ran out"
