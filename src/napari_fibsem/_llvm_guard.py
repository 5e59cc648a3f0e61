"""Keep ``import triton`` from crashing a process that draws with Mesa's software OpenGL.

Under llvmpipe (Xvfb, virtual machines, remote desktops, many microscope PCs) napari's canvas
loads Mesa's ``libLLVM``. triton's extension carries its own LLVM, and loading it afterwards binds
some of its symbols to Mesa's copy: the process dies with a segmentation fault. torch imports
triton as soon as ``torch._dynamo`` loads, which ``import segmentation_models_pytorch`` (through
torchvision) and ``import mobile_sam`` (through timm) trigger, whoever imports them: our docks,
our reader's callers, or the user's own script after it opened something of ours.

So importing :mod:`napari_fibsem` installs :class:`TritonFinder` on ``sys.meta_path``: when triton
is imported (by anyone) while a foreign LLVM is mapped, its modules are executed with
``RTLD_DEEPBIND`` so triton binds to its own LLVM. It does nothing else, costs one list append, and
is absent on platforms without ``RTLD_DEEPBIND``.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from types import ModuleType
from typing import Any


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once); a no-op off Linux or when triton is loaded."""
    if sys.platform != "linux" or not hasattr(os, "RTLD_DEEPBIND") or "triton" in sys.modules:
        return
    if not any(isinstance(f, TritonFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, TritonFinder())


class TritonFinder(importlib.abc.MetaPathFinder):
    """Finds ``triton`` with the other finders and wraps its loader in :class:`_DeepBindLoader`."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        if fullname != "triton":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _DeepBindLoader(spec.loader)
                return spec
        return None


class _DeepBindLoader(importlib.abc.Loader):
    """Runs triton's ``__init__`` (which loads its C extensions) with ``RTLD_DEEPBIND`` when needed."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if not foreign_llvm_loaded():
            self._loader.exec_module(module)
            return
        flags = sys.getdlopenflags()
        sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        try:
            self._loader.exec_module(module)
        finally:
            sys.setdlopenflags(flags)

    def __getattr__(self, name: str) -> Any:  # resource readers, get_filename, is_package ...
        return getattr(self._loader, name)


def foreign_llvm_loaded() -> bool:
    """Whether some LLVM (Mesa's, under software OpenGL) is already mapped into this process."""
    try:
        with open("/proc/self/maps") as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:
        return False
