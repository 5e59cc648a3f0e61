"""What a training run reports while it works and when it ends, and how it is asked to stop.

A widget or the CLI passes ``on_progress`` and a stop check into the trainer instead of the
trainer knowing about tqdm or Qt; the payload is a frozen dataclass so a slot cannot mutate it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from napari_fibsem.core.errors import FibsemError

Phase = Literal["setup", "train", "validate", "done"]


@dataclass(frozen=True)
class Progress:
    """One progress report.

    ``epoch`` counts from 1; ``step`` is the number of optimiser steps done so far in the whole run
    and ``total`` the number the run will take, so ``step / total`` drives a progress bar (also
    across a resume). ``loss`` is the last training step's loss, ``metrics`` the latest validation
    metrics (empty until the first validation); ``phase`` says which part of the run sent it.
    """

    epoch: int
    step: int
    total: int
    loss: float | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    phase: Phase = "train"
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]


class StopFlag:
    """A thread-safe cancel flag: ``flag.set()`` from any thread, the trainer calls ``flag()`` every step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def __call__(self) -> bool:
        return self._event.is_set()


class TrainingError(FibsemError, RuntimeError):
    """Training started but cannot go on (e.g. the loss became NaN)."""


@dataclass(frozen=True)
class TrainingResult:
    """What a run produced; paths are None when that file was not written."""

    save_path: Path
    best_path: Path | None
    last_path: Path | None
    epochs_completed: int
    global_step: int
    total_steps: int
    monitor: str
    best_value: float | None
    best_epoch: int | None
    metrics: dict[str, Any] = field(default_factory=dict)
    """The latest validation metrics."""
    history: tuple[dict[str, Any], ...] = ()
    cancelled: bool = False
