"""The guard around every ``Microscope`` call: safety checks, one lock, logging and recovery.

A mixin of :class:`~napari_fibsem.core.microscope.base.Microscope`, apart from its public methods so
the rules every adapter shares read in one place:

- stage targets outside the configured limits, unconfirmed steps beyond ``max_step_m`` and beam
  shifts beyond ``max_beam_shift_m`` are refused before anything moves;
- ``_op`` runs one operation at a time (a re-entrant lock), refuses when disconnected, translates
  any failure into a ``MicroscopeError``, re-reads the stage after a failure (marking the
  connection lost if even that fails) and writes one event-log record per call.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from napari_fibsem.core.microscope.config import MicroscopeConfig
from napari_fibsem.core.microscope.errors import (
    ConfirmationRequired,
    ConnectionLostError,
    LimitError,
    MicroscopeError,
    NotSupportedError,
    RefusedError,
)
from napari_fibsem.core.microscope.hooks import InstrumentHooks
from napari_fibsem.core.microscope.structures import StagePosition

R = TypeVar("R")
_REFUSALS = (LimitError, ConfirmationRequired, NotSupportedError, RefusedError)


class GuardedInstrument(InstrumentHooks):
    """Safety checks and the logged, recovering call wrapper (state is set by ``Microscope``)."""

    config: MicroscopeConfig
    connected: bool
    state_known: bool
    _lock: threading.RLock

    def check_move(self, current: StagePosition, target: StagePosition, confirm: bool = False) -> None:
        """Raise if ``target`` is outside the limits or too far from ``current`` without ``confirm``."""
        self._check_limits(target)
        if not confirm:
            self._check_step(current, target)

    def _check_limits(self, target: StagePosition) -> None:
        """Refuse a target outside the stage limits (or not a number); needs no instrument call."""
        lim = self.config.stage_limits
        for axis, (lo, hi), value, unit, scale in (
            ("x", lim.x_m, target.x, "mm", 1e3),
            ("y", lim.y_m, target.y, "mm", 1e3),
            ("z", lim.z_m, target.z, "mm", 1e3),
            ("t", lim.tilt_deg, math.degrees(target.t), "°", 1.0),
            ("r", (-math.inf, math.inf), target.r, " rad", 1.0),
        ):
            if not (math.isfinite(value) and lo <= value <= hi):
                raise LimitError(
                    f"refused: target {axis}={value * scale:.4f}{unit} is outside the stage limits "
                    f"[{lo * scale:.4f}, {hi * scale:.4f}]{unit}; nothing moved"
                )

    def _check_step(self, current: StagePosition, target: StagePosition) -> None:
        """Refuse an unconfirmed step beyond ``max_step_m``, or one whose size cannot be known
        because the current position is not a number."""
        step, limit = current.distance_to(target), self.config.max_step_m
        if step <= limit:
            return
        if not math.isfinite(step):
            raise ConfirmationRequired(
                f"refused: the stage position reads x={current.x} y={current.y} z={current.z} m, so the "
                "size of this move cannot be checked; call again with confirm=True to move to the target "
                "anyway; nothing moved"
            )
        raise ConfirmationRequired(
            f"refused: a move of {step * 1e6:.1f} µm is larger than the maximum step "
            f"{limit * 1e6:.1f} µm; call again with confirm=True to move; nothing moved"
        )

    def _move_checked(
        self, target: StagePosition, confirm: bool, current: StagePosition | None = None
    ) -> StagePosition:
        """Check the limits (no instrument call), then, for an unconfirmed move only, the step from
        ``current`` (read now if not given); then move and read where the stage is."""
        self._check_limits(target)
        if not confirm:
            self._check_step(current if current is not None else self._read_stage_position(), target)
        self._move_stage_absolute(target)
        return self._read_stage_position()

    def _check_beam_shift(self, shift: tuple[float, float]) -> None:
        limit = self.config.max_beam_shift_m
        if max(abs(shift[0]), abs(shift[1])) > limit:
            raise LimitError(f"refused: beam shift {shift} m exceeds ±{limit:g} m; move the stage instead")

    # -- the wrapper every public call goes through --------------------------------------------

    def _op(
        self,
        op: str,
        args: dict[str, Any],
        fn: Callable[[], R],
        *,
        needs_connection: bool = True,
        recover: bool = True,
    ) -> R:
        with self._lock:
            t0 = time.monotonic()
            try:
                if needs_connection and not self.connected:
                    raise ConnectionLostError(
                        f"{op}: not connected to {self.config.name}; call reconnect() first"
                    )
                result = fn()
            except Exception as e:
                notes = "".join(f"; {n}" for n in getattr(e, "__notes__", ()))
                err = (
                    e
                    if isinstance(e, MicroscopeError)
                    else MicroscopeError(f"{op} failed: {type(e).__name__}: {e}{notes}")
                )
                after = None
                if recover and needs_connection and not isinstance(e, _REFUSALS) and self.connected:
                    after = self._recover(err)
                self.events.write(
                    op,
                    args,
                    ok=False,
                    error=err,
                    stage_after=after,
                    state_known=self.state_known,
                    duration_s=time.monotonic() - t0,
                )
                if err is e:
                    raise
                raise err from e
            self.events.write(op, args, ok=True, result=result, duration_s=time.monotonic() - t0)
            return result

    def _recover(self, err: MicroscopeError) -> StagePosition | None:
        """Re-read the stage after a failure, so the caller knows where it is."""
        try:
            if isinstance(err, ConnectionLostError):
                raise err
            pos = self._read_stage_position()
        except Exception:
            self.connected = False
            self.state_known = False
            err.args = (f"{err}; state unknown: the connection is lost, call reconnect()",)
            return None
        self.state_known = True
        err.args = (f"{err}; state re-read: stage at x={pos.x:.3e} y={pos.y:.3e} z={pos.z:.3e} m",)
        return pos
