"""``tescanautomation.DrawBeam``: the layer settings class and the status enumeration."""

from __future__ import annotations

from enum import Enum
from typing import Any

from ._fake import record


class Status(Enum):
    ProjectNotLoaded = 0
    ProjectLoadedExpositionIdle = 1
    ProjectLoadedExpositionInProgress = 2
    ProjectLoadedExpositionPaused = 3
    Unknown = 4


class IEtching:
    def __init__(self, **settings: Any) -> None:
        record("DrawBeam.IEtching", **settings)
        self.settings = settings
