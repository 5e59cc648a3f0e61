"""Call log, fault injection and instrument state of the fake TESCAN Automation server.

The state is kept in TESCAN's own units: millimetres, degrees, picoamperes, volts.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any


@dataclass
class Call:
    name: str
    args: tuple
    kwargs: dict


CALLS: list[Call] = []
STATE = SimpleNamespace()
_FAULTS: dict[str, list[BaseException]] = {}


def record(name: str, *args: Any, **kwargs: Any) -> None:
    """Log a call; raise the error queued for ``name`` by :func:`fail_next`, if any."""
    CALLS.append(Call(name, args, kwargs))
    pending = _FAULTS.get(name)
    if pending:
        raise pending.pop(0)


def fail_next(name: str, error: BaseException) -> None:
    """The next call of ``name`` (e.g. ``"Stage.MoveTo"``) raises ``error``."""
    _FAULTS.setdefault(name, []).append(error)


def names() -> list[str]:
    return [c.name for c in CALLS]


def calls(name: str) -> list[Call]:
    return [c for c in CALLS if c.name == name]


def _column(hv: float, current_pa: float, wd_mm: float | None) -> dict[str, Any]:
    return {
        "hv": hv,
        "current_pA": current_pa,
        "viewfield_mm": 0.15,
        "max_viewfield_mm": 2.0,
        "wd_mm": wd_mm,
        "shift_mm": (0.0, 0.0),
        "rotation_deg": 0.0,
        "on": True,
    }


def reset() -> None:
    """Forget calls and faults; put the instrument back to its start state."""
    from .DrawBeam import Status

    CALLS.clear()
    _FAULTS.clear()
    STATE.__dict__.clear()
    STATE.__dict__.update(
        stage=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # x, y, z mm; rotation, tilt x, tilt y degrees
        columns={"SEM": _column(2000.0, 50.0, 4.0), "FIB": _column(30000.0, 300.0, None)},
        drawbeam=SimpleNamespace(status=Status.ProjectNotLoaded, total=0.0, elapsed=0.0, layer=None),
        run_s=4.0,  # a DrawBeam run lasts this many GetStatus() calls (1 s each)
        gis={name: {"position": "Home", "open": False, "heating": False} for name in ("Platinum", "Carbon")},
        vacuum_status=0,  # SharkSEM: 0 ready, 1 pumping, 2 venting, 3 vacuum off, 4 chamber open
        pressure_pa=6e-4,
    )
