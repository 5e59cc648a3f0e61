"""What one closed-loop alignment run records: its steps, true distances and images.

Shared by the loop (``closed_loop``), which fills it, and the report (``closed_loop_report``),
which draws it, so neither imports the other's internals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from napari_fibsem.core.io.imageio import FibsemImage

FEATURE = "LamellaCentre"


@dataclass
class Iteration:
    """One step: where the lamella truly was, what was acted on, and the move made."""

    true_offset_m: tuple[float, float]
    detected_offset_m: tuple[float, float] | None
    acted_offset_m: tuple[float, float] | None
    moved: bool
    action: str
    reason: str = ""
    detected_px: tuple[float, float] | None = None

    @property
    def detection_error_m(self) -> float | None:
        if self.detected_offset_m is None:
            return None
        return math.dist(self.true_offset_m, self.detected_offset_m)


@dataclass
class LoopRun:
    """One alignment run: iterations, the true distance before and after, the two images."""

    name: str
    supervised: bool
    start_m: float
    final_m: float
    iterations: list[Iteration] = field(default_factory=list)
    before: FibsemImage | None = None
    after: FibsemImage | None = None
    before_truth_px: tuple[float, float] | None = None
    after_truth_px: tuple[float, float] | None = None
    requests: int = 0
    tolerance_m: float = 1e-6

    @property
    def moves(self) -> int:
        """Corrective moves: steps that acted on an offset beyond the tolerance."""
        return sum(
            1 for it in self.iterations
            if it.moved and it.acted_offset_m is not None and math.hypot(*it.acted_offset_m) > self.tolerance_m
        )  # fmt: skip

    @property
    def converged(self) -> bool:
        return self.final_m <= self.tolerance_m


def describe(run: LoopRun) -> str:
    """One line: start and final true distance, corrective moves, and whether it converged."""
    verdict = "within" if run.converged else "NOT within"
    asked = f", a person validated {run.requests} step(s)" if run.supervised else ""
    return (f"{run.name}: lamella {run.start_m * 1e6:.2f} um -> {run.final_m * 1e6:.2f} um from the centre in "
            f"{run.moves} move(s) ({verdict} {run.tolerance_m * 1e6:.0f} um){asked}")  # fmt: skip
