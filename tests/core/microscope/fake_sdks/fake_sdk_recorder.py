"""The call log and fault injection that both fake SDKs share (one :class:`Recorder` each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Call:
    name: str
    args: tuple
    kwargs: dict


class Recorder:
    """Logs every SDK call; :meth:`fail_next` makes the next call of a name raise."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._faults: dict[str, list[BaseException]] = {}

    def record(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Log a call; raise the error queued for ``name`` by :meth:`fail_next`, if any."""
        self.calls.append(Call(name, args, kwargs))
        pending = self._faults.get(name)
        if pending:
            raise pending.pop(0)

    def fail_next(self, name: str, error: BaseException) -> None:
        """The next call of ``name`` (e.g. ``"imaging.grab_frame"``) raises ``error``."""
        self._faults.setdefault(name, []).append(error)

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def calls_of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def clear(self) -> None:
        self.calls.clear()
        self._faults.clear()
