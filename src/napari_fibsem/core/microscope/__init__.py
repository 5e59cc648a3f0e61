"""Microscope control: one interface, a simulator, vendor adapters chosen by configuration.

``connect(config)`` builds and connects the adapter that the configuration's manufacturer
names (``Demo``: :class:`~napari_fibsem.core.microscope.simulator.SimulatedMicroscope`).
The simulator and vendor modules load only when used.
"""

from napari_fibsem.core.microscope.base import Microscope
from napari_fibsem.core.microscope.config import (
    ConfigError,
    MicroscopeConfig,
    SimulatorConfig,
    load_config,
    parse_config,
    save_config,
)
from napari_fibsem.core.microscope.connection import connect
from napari_fibsem.core.microscope.errors import (
    AcquisitionError,
    AdapterNotAvailable,
    ConfirmationRequired,
    ConnectionLostError,
    LimitError,
    MicroscopeError,
    NotSupportedError,
    RefusedError,
    StageTimeoutError,
)
from napari_fibsem.core.microscope.events import EventLog, read_events
from napari_fibsem.core.microscope.gas_settings import (
    DepositionProgress,
    DepositionResult,
    GasInjectionSettings,
    GasPort,
    SputterSettings,
)
from napari_fibsem.core.microscope.registry import ADAPTERS
from napari_fibsem.core.microscope.structures import (
    BeamSettings,
    BeamType,
    ChamberState,
    CirclePattern,
    ImageSettings,
    LinePattern,
    ManipulatorPosition,
    MicroscopeState,
    MillingProgress,
    MillingResult,
    MillingSettings,
    Pattern,
    PolygonPattern,
    RectanglePattern,
    StagePosition,
    from_dict,
    to_dict,
)

__all__ = [
    "ADAPTERS",
    "AcquisitionError",
    "AdapterNotAvailable",
    "BeamSettings",
    "BeamType",
    "ChamberState",
    "CirclePattern",
    "ConfigError",
    "ConfirmationRequired",
    "ConnectionLostError",
    "DepositionProgress",
    "DepositionResult",
    "EventLog",
    "GasInjectionSettings",
    "GasPort",
    "ImageSettings",
    "LimitError",
    "LinePattern",
    "ManipulatorPosition",
    "Microscope",
    "MicroscopeConfig",
    "MicroscopeError",
    "MicroscopeState",
    "MillingProgress",
    "MillingResult",
    "MillingSettings",
    "NotSupportedError",
    "Pattern",
    "PolygonPattern",
    "RectanglePattern",
    "RefusedError",
    "SimulatedMicroscope",
    "SimulatorConfig",
    "SputterSettings",
    "StagePosition",
    "StageTimeoutError",
    "connect",
    "from_dict",
    "load_config",
    "parse_config",
    "read_events",
    "save_config",
    "to_dict",
]


def __getattr__(name: str):
    if name == "SimulatedMicroscope":  # renders with scipy; loaded on first use
        from napari_fibsem.core.microscope.simulator import SimulatedMicroscope

        return SimulatedMicroscope
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
