"""The one rule of the house: core never imports Qt, napari or magicgui."""

import pkgutil
import subprocess
import sys

import napari_fibsem.core as core

GUI_PREFIXES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")


def test_core_modules_import_no_gui():
    modules = [m.name for m in pkgutil.walk_packages(core.__path__, prefix="napari_fibsem.core.")]
    assert "napari_fibsem.core.io.imageio" in modules and "napari_fibsem.core.synthetic.scene" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {GUI_PREFIXES!r} and m != 'napari_fibsem')\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported GUI modules: {out.stdout.strip()}"


def test_package_import_is_light():
    """`import napari_fibsem` loads neither torch nor napari (fast plugin discovery)."""
    code = "import sys, napari_fibsem; print(any(m in sys.modules for m in ('torch', 'napari', 'qtpy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
