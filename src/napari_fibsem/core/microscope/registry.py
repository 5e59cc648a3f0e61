"""The adapter registry: which ``module:Class`` drives each manufacturer's instrument.

A plain table of strings, so the configuration can validate a manufacturer name without importing
any adapter (vendor SDKs load only when :func:`~napari_fibsem.core.microscope.connection.connect`
builds that adapter).
"""

from __future__ import annotations

SIMULATOR = "napari_fibsem.core.microscope.simulator:SimulatedMicroscope"
ADAPTERS: dict[str, str] = {
    "demo": SIMULATOR,
    "simulator": SIMULATOR,
    "thermofisher": "napari_fibsem.core.microscope.thermofisher:ThermoFisherMicroscope",
    "tescan": "napari_fibsem.core.microscope.tescan:TescanMicroscope",
}
"""Manufacturer (lower case, no spaces) -> ``module:Class`` of its adapter."""


def adapter_key(manufacturer: str) -> str:
    """The registry key of a manufacturer name as written in a config ("Thermo Fisher" -> "thermofisher")."""
    return "".join(ch for ch in manufacturer.lower() if ch.isalnum())
