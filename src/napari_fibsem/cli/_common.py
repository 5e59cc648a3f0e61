"""What every area of the command line shares: the error exit, size parsing, the per-image bar.

Only typer and the standard library are imported here, so ``napari-fibsem --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

ERROR_EXIT = 2
"""Exit code of a command that refused its input or failed with a reported error."""
INTERRUPTED_EXIT = 130
"""Exit code of a run stopped by Ctrl-C (128 + SIGINT, as a shell reports it)."""


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and leave with :data:`ERROR_EXIT`."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=ERROR_EXIT)


def parse_size(text: str) -> tuple[int, int]:
    """``HEIGHTxWIDTH`` -> ``(height, width)``; a usage error names the expected form."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH such as 1024x1536, got {text!r}") from None
    if h < 32 or w < 32:
        raise typer.BadParameter(f"size {text!r} is too small (at least 32x32)")
    return h, w


def has_display() -> bool:
    """Whether a window can open: always on macOS/Windows, elsewhere when X11 or Wayland is set."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class ImageBar:
    """A tqdm bar fed by core ``on_progress(done, total)`` callbacks; created on the first call."""

    def __init__(self) -> None:
        self._bar = None

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="image", dynamic_ncols=True)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
