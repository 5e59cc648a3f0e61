"""Microscope control: one interface, a simulator, vendor adapters chosen by configuration.

``connect(config)`` builds and connects the adapter that the configuration's manufacturer
names (``Demo``: :class:`~napari_fibsem.core.microscope.simulator.SimulatedMicroscope`).
The simulator and vendor modules load only when used.
"""

import lazy_loader

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


# The simulator renders with scipy: loaded on first use (lazy_loader, as in core.models and core.training).
__getattr__, _, _ = lazy_loader.attach(__name__, submod_attrs={"simulator": ["SimulatedMicroscope"]})
