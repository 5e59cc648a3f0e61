"""The base of every error napari-fibsem raises on purpose, and the one configuration error.

A widget or the CLI catches :class:`FibsemError` and shows its message: each says what is wrong
and where (file, key, device) in the user's words. Each error class also keeps the built-in base
it had (``ValueError``, ``RuntimeError`` ...), so code catching those still works.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class FibsemError(Exception):
    """An error napari-fibsem raised on purpose; its message is meant for the user."""


class ConfigError(FibsemError, ValueError):
    """A configuration (file, form or mapping) cannot be used.

    ``ConfigError(source, problems, what)`` lists one line per bad key under the source's name;
    ``ConfigError(message)`` carries one finished message. ``problems`` holds the lines either way.
    """

    def __init__(self, source: str | Path, problems: Sequence[str] | None = None, what: str = "config") -> None:
        if problems is None:
            self.source, self.problems = "", [str(source)]
            super().__init__(str(source))
            return
        self.source = str(source)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.source}: {len(self.problems)} problem(s) in the {what}:\n{lines}")


class DeviceError(FibsemError, ValueError):
    """A compute device was asked for that this machine does not have."""
