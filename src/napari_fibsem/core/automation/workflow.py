"""A supervised step: acquire -> detect -> validate -> move -> log, and the alignment loop built on it.

Validation is a callback, so the same step runs unsupervised (:func:`auto_accept`), scripted in
tests (:class:`ScriptedValidator`) or with a person at the napari pop-up
(:class:`ValidationBroker`, which a worker thread blocks on without polling). A guard keeps the
automation honest: a feature that is not found, or a move larger than ``max_move_m``, is never
acted on without a person; unsupervised, the step stops and says why.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from psygnal import Signal

from napari_fibsem.core.detection import DetectedFeatures, detect_features
from napari_fibsem.core.io.imageio import FibsemImage

Action = Literal["accept", "skip", "stop"]


class WorkflowCancelled(Exception):
    """The run was stopped (Stop pressed, or cancelled while waiting for a person)."""


@dataclass(frozen=True)
class ValidationRequest:
    step: str
    image: FibsemImage
    detected: DetectedFeatures
    feature: str
    reason: str  # why a person is asked: "supervised", or the guard's finding
    iteration: int = 1  # which step of the loop asks (1-based) ...
    iterations: int = 1  # ... of at most this many
    config: StepConfig | None = None  # the step's settings (what Accept will do)
    class_map: Any = None  # the model's class map (the mask's class names and colours)


@dataclass(frozen=True)
class ValidationResult:
    action: Action
    features: DetectedFeatures | None = None  # the (possibly corrected) features to act on
    mask: Any = None  # a corrected mask, when the person edited it


Validator = Callable[[ValidationRequest], ValidationResult]


def auto_accept(request: ValidationRequest) -> ValidationResult:
    """Unsupervised: take the detection as it is."""
    return ValidationResult("accept", request.detected)


class ScriptedValidator:
    """Answers from a script, for tests and demos: ``corrections`` maps feature -> (x, y) pixels."""

    def __init__(self, corrections: dict[str, tuple[float, float]] | None = None, action: Action = "accept") -> None:
        self.corrections = dict(corrections or {})
        self.action = action
        self.requests: list[ValidationRequest] = []

    def __call__(self, request: ValidationRequest) -> ValidationResult:
        self.requests.append(request)
        features = request.detected
        for name, (x, y) in self.corrections.items():
            if name in features.features:
                features = features.with_point(name, x, y)
        return ValidationResult(self.action, features)


class ValidationBroker:
    """Hands a request from the workflow thread to a UI and blocks until it answers or is cancelled.

    The UI connects to ``requested`` (emitted in the workflow thread; a Qt receiver queues it to
    the UI thread) and calls :meth:`answer`. :meth:`cancel` wakes the waiting thread, which raises
    :class:`WorkflowCancelled`.
    """

    requested = Signal(object)

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._answer: ValidationResult | None = None
        self._cancelled = False
        self.pending: ValidationRequest | None = None

    def __call__(self, request: ValidationRequest) -> ValidationResult:
        with self._cond:
            if self._cancelled:
                raise WorkflowCancelled("cancelled before validation")
            self._answer, self.pending = None, request
        self.requested.emit(request)
        with self._cond:
            self._cond.wait_for(lambda: self._answer is not None or self._cancelled)
            self.pending = None
            if self._answer is None:
                raise WorkflowCancelled("cancelled while waiting for validation")
            return self._answer

    def answer(self, result: ValidationResult) -> None:
        with self._cond:
            self._answer = result
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def reset(self) -> None:
        with self._cond:
            self._cancelled, self._answer = False, None


@dataclass
class StepResult:
    step: str
    action: Action
    offset_m: tuple[float, float] | None  # the feature's offset from the image centre acted on
    moved: bool
    reason: str = ""
    image: FibsemImage | None = None
    detected: DetectedFeatures | None = None
    final: DetectedFeatures | None = None


@dataclass
class StepConfig:
    """One supervised step: find ``feature`` in ``beam`` images and centre it by ``move``."""

    name: str = "align"
    feature: str = "LamellaCentre"
    beam: str = "electron"
    move: Literal["stable", "manipulator", "none"] = "stable"
    max_move_m: float = 50e-6
    supervised: bool = False
    image_settings: Any = None  # microscope ImageSettings; None: the microscope's default
    checkpoint: str = ""
    extra_features: list[str] = field(default_factory=list)


def run_step(
    microscope: Any,
    model: Any,
    config: StepConfig,
    validator: Validator = auto_accept,
    engine: Any = None,
    cancel: threading.Event | None = None,
    iteration: int = 1,
    iterations: int = 1,
) -> StepResult:
    """One acquire -> detect -> validate -> move -> log cycle (``iteration`` of ``iterations``)."""
    if cancel is not None and cancel.is_set():
        raise WorkflowCancelled("stopped before the step")
    image = microscope.acquire_image(config.image_settings)
    features = ["ImageCentre", config.feature, *config.extra_features]
    detected = detect_features(image, model, features)
    offset, why = _guard(detected, config)
    result = ValidationResult("accept", detected)
    if config.supervised or why:
        if not config.supervised and validator is auto_accept:
            _log(engine, image, detected, None, config)
            return StepResult(config.name, "stop", offset, False, f"guard: {why}; not acting without a person",
                              image, detected, detected)  # fmt: skip
        result = validator(ValidationRequest(config.name, image, detected, config.feature, why or "supervised",
                                             iteration, iterations, config, getattr(model, "class_map", None)))  # fmt: skip
    final = result.features or detected
    _log(engine, image, detected, final, config, result.mask)
    if result.action != "accept":
        return StepResult(config.name, result.action, None, False, "by the person", image, detected, final)
    offset, why = _guard(final, config)
    if why:  # the person's answer still fails the guard (e.g. dragged far away): never move
        return StepResult(config.name, "stop", offset, False, f"guard: {why}", image, detected, final)
    if cancel is not None and cancel.is_set():
        raise WorkflowCancelled("stopped before moving")
    assert offset is not None
    if config.move == "stable":
        microscope.stable_move(offset[0], offset[1], config.beam)
    elif config.move == "manipulator":
        microscope.move_manipulator_relative(dx=-offset[0], dy=-offset[1])
    return StepResult(config.name, "accept", offset, config.move != "none", "", image, detected, final)


def _guard(detected: DetectedFeatures, config: StepConfig) -> tuple[tuple[float, float] | None, str]:
    f = detected[config.feature]
    if f.px is None:
        return None, f"{config.feature} not found ({f.reason})"
    offset = detected.offset_m(config.feature)
    distance = math.hypot(*offset)
    if distance > config.max_move_m:
        return offset, f"move of {distance * 1e6:.1f} um exceeds the {config.max_move_m * 1e6:.1f} um limit"
    return offset, ""


def _log(engine, image, detected, final, config: StepConfig, mask=None) -> None:
    if engine is not None:
        engine.log(image, detected, final, checkpoint=config.checkpoint, step=config.name, beam=config.beam,
                   corrected_mask=mask)  # fmt: skip


def iter_align(
    microscope: Any,
    model: Any,
    config: StepConfig,
    validator: Validator = auto_accept,
    engine: Any = None,
    tolerance_m: float = 1e-6,
    max_iterations: int = 3,
    cancel: threading.Event | None = None,
) -> Iterator[StepResult]:
    """Run the step again and again, yielding each result, until the feature is within
    ``tolerance_m`` of the centre, a step does not accept, or ``max_iterations`` moves were made.

    Lazy: nothing happens until the next result is asked for, so a caller can report between steps.
    """
    n = max_iterations + 1
    for i in range(n):
        r = run_step(microscope, model, config, validator, engine, cancel, iteration=i + 1, iterations=n)
        yield r
        if ends_alignment(r, tolerance_m):
            return


def ends_alignment(r: StepResult, tolerance_m: float) -> bool:
    """Whether the loop stops after ``r``: not accepted, nothing to act on, or already centred."""
    return r.action != "accept" or r.offset_m is None or math.hypot(*r.offset_m) <= tolerance_m


def align_feature(
    microscope: Any,
    model: Any,
    config: StepConfig,
    validator: Validator = auto_accept,
    engine: Any = None,
    tolerance_m: float = 1e-6,
    max_iterations: int = 3,
    cancel: threading.Event | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Repeat the step until the feature is within ``tolerance_m`` of the centre (or a stop)."""
    results: list[StepResult] = []
    for r in iter_align(microscope, model, config, validator, engine, tolerance_m, max_iterations, cancel):
        results.append(r)
        if on_step is not None:
            on_step(r)
    return results


def describe_accept(request: ValidationRequest, features: DetectedFeatures | None = None) -> str:
    """What Accept will do with ``features`` (default: as detected), in the person's words.

    E.g. "Accept moves the stage 8.8 µm right, 4.7 µm down in the electron beam (iteration 1 of
    at most 4)"; the same guard as :func:`run_step` decides, so the sentence never promises a move
    the step would refuse.
    """
    config = request.config or StepConfig(feature=request.feature)
    features = features or request.detected
    of = f" (iteration {request.iteration} of at most {request.iterations})" if request.iterations > 1 else ""
    offset, why = _guard(features, config)
    if offset is None:
        return f"{config.feature} is not placed: add it where it is. Accept now stops the run without moving{of}"
    if why:
        return f"Accept does not move: {why}; drag {config.feature} or Skip{of}"
    if config.move == "none":
        return f"Accept records the points; nothing moves{of}"
    dx, dy = offset if config.move == "stable" else (-offset[0], -offset[1])
    what = "the stage" if config.move == "stable" else "the needle"
    return f"Accept moves {what} {_in_words(dx, dy)} in the {config.beam} beam{of}"


def _in_words(dx: float, dy: float) -> str:
    """A move in micrometres as the person reads it: "8.8 µm right, 4.7 µm down" (+y is up)."""
    parts = [f"{abs(v) * 1e6:.1f} µm {(pos if v > 0 else neg)}"
             for v, pos, neg in ((dx, "right", "left"), (dy, "up", "down")) if abs(v) >= 0.05e-6]  # fmt: skip
    return ", ".join(parts) or "by less than 0.1 µm"
