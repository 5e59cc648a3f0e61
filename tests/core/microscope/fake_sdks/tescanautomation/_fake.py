"""Call log, fault injection and instrument state of the fake TESCAN Automation server.

The state is kept in TESCAN's own units: millimetres, degrees, picoamperes, volts.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fake_sdk_recorder import Call, Recorder

_RECORDER = Recorder()
CALLS = _RECORDER.calls
STATE = SimpleNamespace()
record = _RECORDER.record
fail_next = _RECORDER.fail_next
names = _RECORDER.names
calls = _RECORDER.calls_of
__all__ = ["CALLS", "STATE", "Call", "calls", "fail_next", "names", "record", "reset"]


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

    _RECORDER.clear()
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
