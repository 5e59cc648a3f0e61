"""Call log, fault injection and instrument state of the fake AutoScript server."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fake_sdk_recorder import Call, Recorder


class ApplicationServerException(Exception):
    """Stands in for ``autoscript_core.common.ApplicationServerException``."""


_RECORDER = Recorder()
CALLS = _RECORDER.calls
STATE = SimpleNamespace()
record = _RECORDER.record
fail_next = _RECORDER.fail_next
names = _RECORDER.names
calls = _RECORDER.calls_of
__all__ = ["CALLS", "STATE", "Call", "calls", "fail_next", "names", "record", "reset"]


def _beam(voltage: float, current: float, wd: float) -> dict[str, Any]:
    return {
        "hv": voltage,
        "current": current,
        "hfw": 150e-6,
        "max_hfw": 2e-3,
        "wd": wd,
        "shift": (0.0, 0.0),
        "stig": (0.0, 0.0),
        "rotation": 0.0,
        "dwell": 1e-6,
        "resolution": "1536x1024",
        "on": True,
    }


def reset() -> None:
    """Forget calls and faults; put the instrument back to its start state (SI units)."""
    _RECORDER.clear()
    STATE.__dict__.clear()
    STATE.__dict__.update(
        view=1,
        stage={"x": 0.0, "y": 0.0, "z": 0.0, "r": 0.0, "t": 0.0},
        stage_cs="Raw",
        beams={"electron_beam": _beam(2e3, 50e-12, 4e-3), "ion_beam": _beam(30e3, 300e-12, 16.5e-3)},
        has_needle=True,
        needle={"x": 0.0, "y": 0.0, "z": 0.0},
        inserted=False,
        patterns=[],
        mode="Serial",
        application_file="Si",
        pattern_beam=1,
        run_polls=3,  # patterning.state reads "Running" this many times after start()
        polls_left=0,
        gis={name: _gis_port() for name in ("Pt dep", "Water")},
        chamber_state="Pumped",
        chamber_pressure=8e-5,  # Pa
        has_coater=True,
        coater={"current": 0.01, "prepared": False, "ran_s": 0.0},  # A, s
    )


def _gis_port() -> dict[str, Any]:
    return {"inserted": False, "open": False, "heater": False, "room_K": 295.0, "heated_K": 318.0}


reset()
