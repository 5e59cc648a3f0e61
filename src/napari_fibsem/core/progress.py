"""The one progress callback of counted work (images predicted, rows imported, frames scored).

``on_progress(done, total)`` after each item, called from whatever thread does the work; the CLI
turns it into a bar and a widget relays it to the UI thread. Training reports more than a count
(epoch, loss, metrics) with its own :class:`~napari_fibsem.core.training.progress.Progress`.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]
