"""napari-fibsem: machine learning on FIB-SEM images — a headless core plus napari widgets.

Importing the package does nothing else: widgets, torch and napari load only when used.
"""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-fibsem")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
