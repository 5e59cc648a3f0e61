"""Small pieces every widget uses: starting background work, progress relays, colour swatches.

Work starts the same way everywhere: in a napari worker thread, or inline in the calling thread
when ``NAPARI_FIBSEM_NOTHREADS`` is set (a debugging and scripting aid; inline, exceptions
propagate as plain tracebacks instead of going to ``on_errored``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QSize, Qt, Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QFrame, QScrollArea, QWidget


class ProgressRelay(QObject):
    """Carries ``(done, total)`` progress from a worker thread to the UI thread (a queued signal)."""

    progressed = Signal(int, int)


def threads_disabled() -> bool:
    return os.environ.get("NAPARI_FIBSEM_NOTHREADS", "") not in ("", "0")


def start_worker(
    func: Callable[..., Any],
    *args: Any,
    on_returned: Callable[[Any], None],
    on_errored: Callable[[BaseException], None] | None = None,
    on_yielded: Callable[[Any], None] | None = None,
    on_aborted: Callable[[], None] | None = None,
    on_finished: Callable[[], None] | None = None,
    owner: Any | None = None,
) -> Any | None:
    """Run ``func(*args)`` off the UI thread; the callbacks run on the UI thread.

    ``func`` may be a generator: its yields go to ``on_yielded`` and quitting the worker ends it
    at the next yield (``on_aborted``). With ``owner`` (a QObject), callbacks arriving after the
    owner was deleted (its dock closed while the work ran) are dropped instead of touching dead
    widgets, and a generator is quit when the owner is destroyed. Returns the worker, or None when it ran inline (then every callback has already run).
    """
    if owner is not None:
        on_returned, on_errored, on_yielded, on_aborted, on_finished = (
            None if cb is None else _while_alive(owner, cb)
            for cb in (on_returned, on_errored, on_yielded, on_aborted, on_finished)
        )
        assert on_returned is not None
    if threads_disabled():
        result = func(*args)
        if inspect.isgenerator(result):
            try:
                while True:
                    value = next(result)
                    if on_yielded is not None:
                        on_yielded(value)
            except StopIteration as stop:
                result = stop.value
        on_returned(result)
        if on_finished is not None:
            on_finished()
        return None
    from napari.qt.threading import create_worker

    worker = create_worker(func, *args, _ignore_errors=on_errored is not None)
    worker.returned.connect(on_returned)
    if on_errored is not None:
        worker.errored.connect(on_errored)
    if on_yielded is not None:
        worker.yielded.connect(on_yielded)
    if on_aborted is not None and hasattr(worker, "aborted"):
        worker.aborted.connect(on_aborted)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    if owner is not None and hasattr(worker, "quit"):
        # a closed dock (or viewer) ends its generator work at the next yield instead of leaving
        # it running in a thread nobody listens to
        owner.destroyed.connect(worker.quit)
    worker.start()
    return worker


def alive(obj: Any) -> bool:
    """Whether the C++ side of a Qt object still exists (Python wrappers outlive closed docks)."""
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


def _while_alive(owner: Any, callback: Callable[..., None]) -> Callable[..., None]:
    def call(*args: Any) -> None:
        if alive(owner):
            callback(*args)

    return call


def swatch(colour: str, size: int = 12) -> QIcon:
    """A filled square icon of ``colour`` (class and feature pickers)."""
    pix = QPixmap(size, size)
    pix.fill(QColor(colour))
    return QIcon(pix)


class VerticalScroll(QScrollArea):
    """Scrolls vertically only, and is never narrower than its content (plus the scroll bar).

    A dock taller than a laptop screen, or sharing the dock area with others, scrolls instead of
    squeezing its rows on top of each other.
    """

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(content)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        hint = super().minimumSizeHint()
        width = (
            self.widget().minimumSizeHint().width()
            + self.verticalScrollBar().sizeHint().width()
            + 2 * self.frameWidth()
            + 4
        )
        return QSize(max(hint.width(), width), hint.height())
