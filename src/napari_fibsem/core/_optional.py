"""Optional heavy dependencies, imported only inside the function that needs them.

A missing one should tell the user which extra to install instead of failing with a bare
``ModuleNotFoundError`` deep inside a backend.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ImportError naming the ``napari-fibsem[extra]`` that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{module!r} is needed for this feature but could not be imported ({e}). "
            f"Install it with: pip install napari-fibsem[{extra}]"
        ) from e
