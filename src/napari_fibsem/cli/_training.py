"""The one way the command line runs a training job (``train`` and ``events train``).

It owns what both commands need around their trainer: the step bar, the first Ctrl-C that asks the
run to stop at the next step (a second one kills as usual), the choice between this process and
``--nprocs`` spawned ones, the error-to-exit-code mapping and the process-group teardown.
tqdm and the DDP helpers are imported inside, so ``--help`` stays fast.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from napari_fibsem.cli._common import fail

R = TypeVar("R")


def check_nprocs(nprocs: int, ctx: Any) -> None:
    """``--nprocs`` spawns its own group, which cannot nest inside a torchrun one."""
    if nprocs > 1 and ctx.enabled:
        fail("--nprocs starts its own processes; under torchrun leave it at 1")


class StepBar:
    """A tqdm bar over training steps, described by epoch, with the loss and one metric as postfix.

    ``metric`` is ``(key in Progress.metrics, label, format)``; ``show_messages`` also prints the
    set-up and validation messages above the bar (the event trainer's summaries).
    """

    def __init__(self, epochs: int, metric: tuple[str, str, str], show_messages: bool = False) -> None:
        self.epochs = epochs
        self.metric = metric
        self.show_messages = show_messages
        self._bar = None

    @staticmethod
    def write(text: str) -> None:
        """Print a line above the bar without tearing it."""
        from tqdm import tqdm

        tqdm.write(text)

    def update(self, p: Any) -> None:
        """The trainer's ``on_progress`` callback (a core ``Progress``)."""
        if self.show_messages and p.phase == "setup":
            self.write(p.message)
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=p.total, initial=p.step, unit="step", dynamic_ncols=True)
        self._bar.n = p.step
        self._bar.set_description(f"epoch {p.epoch}/{self.epochs}")
        post = {"loss": f"{p.loss:.4f}"} if p.loss is not None else {}
        key, label, fmt = self.metric
        if p.metrics.get(key) is not None:
            post[label] = format(p.metrics[key], fmt)
        self._bar.set_postfix(post, refresh=True)
        if self.show_messages and p.phase == "validate" and p.message:
            self.write(p.message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CtrlC:
    """While entered, the first Ctrl-C prints ``message`` and calls ``stop``; the second one kills.

    ``pressed`` tells afterwards whether the run was stopped this way. ``stop`` may be set after
    construction (the trainer that owns it may not exist yet).
    """

    def __init__(self, message: str, stop: Callable[[], None] | None = None) -> None:
        self.message = message
        self.stop = stop
        self.pressed = False
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.pressed = True
        StepBar.write(self.message)
        if self.stop is not None:
            self.stop()
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> CtrlC:
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def run_training(
    nprocs: int,
    ctx: Any,
    errors: tuple[type[BaseException], ...],
    here: Callable[[], R],
    spawned: Callable[[], R],
) -> R:
    """Run ``here()`` in this process (torchrun's or a plain one) or ``spawned()`` for ``--nprocs`` > 1.

    ``errors`` become ``error: ...`` and exit code 2; a torchrun process group is torn down either
    way, with a barrier only after success (a failed rank would leave the others waiting).
    """
    from napari_fibsem.core.training.ddp import cleanup

    ok = False
    try:
        if nprocs > 1:
            typer.echo(f"training with {nprocs} processes")
            result = spawned()
        else:
            result = here()
        ok = True
    except errors as e:
        fail(str(e))
    finally:
        if ctx.enabled:
            cleanup(barrier=ok)
    return result
