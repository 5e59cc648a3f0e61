"""napari-fibsem: machine learning on FIB-SEM images — a headless core plus napari widgets.

Importing the package loads nothing heavy: widgets, torch and napari load only when used. It does
install one import hook, so that torch's ``import triton`` cannot crash a process that draws with
software OpenGL (see :mod:`napari_fibsem._llvm_guard`).
"""

from napari_fibsem._llvm_guard import install as _install_llvm_guard

_install_llvm_guard()

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-fibsem")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
