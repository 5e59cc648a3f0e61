"""A fake ``autoscript_sdb_microscope_client`` for tests: records calls, keeps a tiny state.

Test controls (not part of AutoScript): ``CALLS``, ``STATE``, ``reset()``, ``fail_next()``,
``names()``, ``calls()`` and ``ApplicationServerException``.
"""

from ._client import SdbMicroscopeClient
from ._fake import CALLS, STATE, ApplicationServerException, Call, calls, fail_next, names, reset

__all__ = [
    "CALLS",
    "STATE",
    "ApplicationServerException",
    "Call",
    "SdbMicroscopeClient",
    "calls",
    "fail_next",
    "names",
    "reset",
]
