"""Gas injection (GIS) and sputter coating data: settings, port readings, progress and results.

Plain values shared by the adapters' hooks (``hooks``), the safe sequences (``gas``) and the
widgets; kept apart from the sequences so the hook interface does not depend on them.
Units: seconds, kelvin, amperes, volts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Phase = Literal["insert", "heat", "deposit", "prepare", "coat"]


@dataclass(frozen=True)
class GasPort:
    """One GIS port as the instrument reports it; ``None`` where the instrument does not say."""

    name: str  # e.g. "Pt dep"
    inserted: bool | None = None
    open: bool | None = None  # the valve
    temperature: float | None = None  # K
    ready: bool | None = None  # heated and ready to open


@dataclass(frozen=True)
class GasInjectionSettings:
    """One deposition through a GIS port: the valve is open for ``duration`` seconds.

    ``heat`` switches the port's heater on first (and off at the end) and waits, at most
    ``heat_timeout`` seconds, until the port is ready: until it reads at least ``temperature``
    (K) when that is given, else until the instrument says it is ready. ``insert_position`` is an
    insert position the instrument names (None: its default).
    """

    port: str = "Pt dep"
    duration: float = 30.0  # s
    insert_position: str | None = None
    heat: bool = True
    temperature: float | None = None  # K
    heat_timeout: float = 60.0  # s

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration) and self.duration >= 0):
            raise ValueError(f"the injection duration must be >= 0 s, not {self.duration}")
        if not self.heat_timeout > 0:
            raise ValueError(f"heat_timeout must be positive, not {self.heat_timeout}")
        if self.temperature is not None and not (self.heat and self.temperature > 0):
            raise ValueError("a GIS temperature (K, > 0) needs heat=True")


@dataclass(frozen=True)
class SputterSettings:
    """One sputter coating run of ``duration`` seconds; ``current``/``voltage``/``target`` where
    the instrument lets them be set (None: as the instrument is set up)."""

    duration: float = 30.0  # s
    current: float | None = None  # A (a magnetron coater runs at ~10 mA = 0.01 A)
    voltage: float | None = None  # V
    target: str | None = None  # target or gas, e.g. "Pt"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration) and self.duration >= 0):
            raise ValueError(f"the sputter duration must be >= 0 s, not {self.duration}")
        for name in ("current", "voltage"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"sputter {name} must be positive, not {value}")


@dataclass(frozen=True)
class DepositionProgress:
    """One progress report of a gas injection or a sputter run; ``fraction`` drives a progress bar."""

    phase: Phase
    deposited: float  # s of gas flow / coating so far
    requested: float  # s asked for
    elapsed: float  # s since the start of the sequence
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.deposited / self.requested) if self.requested else 1.0


@dataclass(frozen=True)
class DepositionResult:
    """How a gas injection or a sputter run ended; ``stopped_in`` names the phase a stop ended."""

    completed: bool
    deposited: float  # s of gas flow / coating
    requested: float  # s
    elapsed: float  # s, the whole sequence
    stopped_in: Phase | None = None
