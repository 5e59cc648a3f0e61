"""What the vendor-SDK adapters (ThermoFisher, Tescan) share, so each keeps only its vendor's calls.

Limits, confirmation, logging, recovery and the stage-move geometry come from
:class:`~napari_fibsem.core.microscope.base.Microscope`. On top of it :class:`VendorMicroscope`
checks that the configuration names the adapter's manufacturer, imports the SDK on
``connect()`` (a missing SDK raises :class:`AdapterNotAvailable` with the adapter's install
hint), holds the SDK's connection (``_api``), translates SDK exceptions into ours
(``_calling``), paces milling status polls (``_poll_job``) and refuses stage targets that are
not in raw coordinates. ``host_port`` and ``differs`` are the address parsing and the "did this
value change" test both adapters use.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

from napari_fibsem.core.microscope.base import Microscope
from napari_fibsem.core.microscope.config import MicroscopeConfig
from napari_fibsem.core.microscope.errors import (
    AdapterNotAvailable,
    ConnectionLostError,
    MicroscopeError,
    NotSupportedError,
)
from napari_fibsem.core.microscope.events import EventLog
from napari_fibsem.core.microscope.registry import adapter_key as _key
from napari_fibsem.core.microscope.structures import StagePosition


def host_port(address: str, default: int | None = None) -> tuple[str, int | None]:
    """``"host"`` or ``"host:port"``; a bare host gets ``default`` (an IPv6 address is passed whole)."""
    host, sep, port = address.rpartition(":")
    if sep and host and ":" not in host and port.isdigit():
        return host, int(port)
    return address, default


def differs(a: float, b: float, rel: float = 1e-9) -> bool:
    """Whether two instrument values differ by more than round-off (``rel``: relative tolerance)."""
    return not math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-15)


class VendorMicroscope(Microscope):
    """A microscope behind a vendor SDK. A subclass names ``manufacturer`` (as in the configuration),
    ``sdk_name`` (how messages call the SDK), ``sdk_modules`` (attribute of ``self._sdk`` -> module
    to import) and ``install_hint`` (the message for a missing SDK; ``{error}`` is the import error).
    """

    manufacturer: ClassVar[str]
    sdk_name: ClassVar[str]
    sdk_modules: ClassVar[dict[str, str]]
    install_hint: ClassVar[str]
    poll_interval_s = 0.5  # between milling status reads (an instance may set 0 in tests)
    start_timeout_s = 10.0  # how long an idle status right after the start may mean "not started yet"

    def __init__(
        self, config: MicroscopeConfig | None = None, *, event_log: EventLog | str | Path | None = None
    ) -> None:
        config = config or MicroscopeConfig(manufacturer=self.manufacturer)
        if _key(config.manufacturer) != _key(self.manufacturer):
            raise MicroscopeError(
                f"{type(self).__name__} needs manufacturer {self.manufacturer}, not {config.manufacturer!r}"
            )
        super().__init__(config, event_log=event_log)
        self._conn = None  # the SDK's connection object while connected
        self._sdk: SimpleNamespace | None = None
        self._job: dict | None = None

    def _import_sdk(self) -> SimpleNamespace:
        try:
            return SimpleNamespace(**{k: importlib.import_module(m) for k, m in self.sdk_modules.items()})
        except ImportError as e:
            raise AdapterNotAvailable(self.install_hint.format(error=e)) from e

    def _api(self):
        if self._conn is None or self._sdk is None:
            raise ConnectionLostError(f"not connected to {self.sdk_name}; call connect() or reconnect()")
        return self._conn

    def _poll_job(self) -> dict:
        """The running milling job, after waiting one poll interval."""
        job = self._job
        if job is None:
            raise MicroscopeError("no milling job is running")
        time.sleep(self.poll_interval_s)
        return job

    @contextmanager
    def _calling(
        self,
        what: str,
        error: type[MicroscopeError] = MicroscopeError,
        timeout: type[MicroscopeError] | None = None,
    ) -> Iterator[None]:
        """Turn an SDK exception into ours, keeping its type name and message: a broken connection
        is a ``ConnectionLostError``, a timeout ``timeout`` (default ``error``), the rest ``error``."""
        try:
            yield
        except MicroscopeError:
            raise
        except (ConnectionError, EOFError) as e:
            raise ConnectionLostError(
                f"{what}: the {self.sdk_name} connection failed ({type(e).__name__}: {e})"
            ) from e
        except TimeoutError as e:
            raise (timeout or error)(f"{what}: {self.sdk_name} timed out ({type(e).__name__}: {e})") from e
        except Exception as e:
            raise error(f"{what} failed: {self.sdk_name} {type(e).__name__}: {e}") from e

    def _require_raw(self, position: StagePosition) -> None:
        if position.coordinate_system != "raw":
            raise NotSupportedError(
                f"the {self.manufacturer} adapter moves in raw stage coordinates only; "
                "give the target with coordinate_system='raw'"
            )
