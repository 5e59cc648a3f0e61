"""Errors of the microscope layer: one type per thing a caller can react to differently.

All derive from :class:`MicroscopeError`, so ``except MicroscopeError`` catches every refusal
and fault; refusals (limits, confirmation, ``RefusedError``) are raised before anything moves.
"""

from __future__ import annotations

from napari_fibsem.core.errors import FibsemError


class MicroscopeError(FibsemError, RuntimeError):
    """A microscope operation failed or was refused; the message says which and why."""


class LimitError(MicroscopeError, ValueError):
    """A move would leave the configured stage limits; nothing was moved."""


class ConfirmationRequired(MicroscopeError):
    """A move is larger than the configured maximum step; repeat it with ``confirm=True``."""


class AcquisitionError(MicroscopeError):
    """The instrument did not deliver an image."""


class StageTimeoutError(MicroscopeError):
    """The stage did not reach its target in time; the position was re-read afterwards."""


class ConnectionLostError(MicroscopeError):
    """The connection to the instrument dropped; call ``reconnect()`` before the next operation."""


class RefusedError(MicroscopeError):
    """The instrument's state or the request forbids the operation (a vented chamber, an unknown
    GIS port); it was refused before anything was done."""


class NotSupportedError(MicroscopeError):
    """This instrument (or adapter) does not offer the operation."""


class AdapterNotAvailable(MicroscopeError):
    """The adapter for a manufacturer is not available in this installation."""
