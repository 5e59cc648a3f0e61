"""A fake ``tescanautomation`` for tests: records calls, keeps a tiny state in TESCAN units.

Test controls (not part of TESCAN Automation): ``CALLS``, ``STATE``, ``reset()``,
``fail_next()``, ``names()`` and ``calls()``.
"""

from ._automation import Automation
from ._fake import CALLS, STATE, Call, calls, fail_next, names, reset

reset()

__all__ = ["CALLS", "STATE", "Automation", "Call", "calls", "fail_next", "names", "reset"]
