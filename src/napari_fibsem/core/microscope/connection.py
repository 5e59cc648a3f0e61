"""Building and connecting the adapter a configuration names.

Here rather than in ``config`` because it needs both the configuration and the ``Microscope``
interface, which itself reads the configuration.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_fibsem.core.microscope.config import ConfigError, MicroscopeConfig, load_config, parse_config
from napari_fibsem.core.microscope.errors import AdapterNotAvailable
from napari_fibsem.core.microscope.registry import ADAPTERS, adapter_key

if TYPE_CHECKING:
    from napari_fibsem.core.microscope.base import Microscope


def adapter_class(manufacturer: str) -> type[Microscope]:
    """The adapter class for ``manufacturer``, imported now; a missing one raises a clear error."""
    key = adapter_key(manufacturer)
    if key not in ADAPTERS:
        raise ConfigError(f"unknown manufacturer {manufacturer!r}; known: {sorted(ADAPTERS)}")
    module_name, _, cls_name = ADAPTERS[key].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:  # the adapter exists but its SDK (or another dependency) is missing
            raise
        raise AdapterNotAvailable(
            f"the {manufacturer} adapter is not available here ({module_name} is not part of this "
            "installation); use 'manufacturer: Demo' for the simulator"
        ) from None
    return getattr(module, cls_name)


def connect(config: MicroscopeConfig | dict | str | Path | None = None, **kwargs: Any) -> Microscope:
    """Build the adapter that ``config`` names and connect it (no argument: the simulator).

    ``config`` may be a :class:`MicroscopeConfig`, a mapping or a YAML path; ``kwargs`` go to the
    adapter (e.g. ``event_log=``).
    """
    if config is None or isinstance(config, dict):
        config = parse_config(config)
    elif isinstance(config, (str, Path)):
        config = load_config(config)
    microscope = adapter_class(config.manufacturer)(config, **kwargs)
    microscope.connect()
    return microscope
