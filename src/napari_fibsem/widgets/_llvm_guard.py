"""Load triton safely in a napari process that draws with Mesa's software OpenGL (llvmpipe).

Under llvmpipe (Xvfb, virtual machines, remote desktops) napari's canvas loads Mesa's
``libLLVM``. triton's extension carries its own LLVM, and loading it afterwards binds some of its
symbols to Mesa's copy: ``import triton`` then kills the process with a segmentation fault. torch
imports triton as soon as ``torch._dynamo`` loads, which ``import segmentation_models_pytorch``
triggers (through torchvision), so any widget that builds or loads a model must call
:func:`preload_triton` first. Loading triton with ``RTLD_DEEPBIND`` makes it use its own symbols.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def preload_triton() -> None:
    """Import triton with its own LLVM when another LLVM is already loaded; otherwise do nothing."""
    if sys.platform != "linux" or "triton" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    if importlib.util.find_spec("triton") is None or not _foreign_llvm_loaded():
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import triton  # noqa: F401
    except ImportError:
        pass  # torch then treats triton as absent, which training on CPU or without compile does not need
    finally:
        sys.setdlopenflags(flags)


def _foreign_llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps") as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:
        return False
