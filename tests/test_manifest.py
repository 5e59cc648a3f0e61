"""The npe2 manifest is valid and every command it names imports (without Qt)."""

import importlib
from pathlib import Path

import npe2

import napari_fibsem

MANIFEST = Path(napari_fibsem.__file__).parent / "napari.yaml"


def test_manifest_validates_and_commands_import():
    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-fibsem"
    for cmd in pm.contributions.commands:
        module, attr = cmd.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), cmd.python_name


def test_manifest_is_registered_through_entry_point():
    pm = npe2.PluginManager.instance()
    pm.discover()
    assert "napari-fibsem" in pm._manifests
