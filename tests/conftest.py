"""Shared fixtures: small seeded synthetic scenes, dataset folders, an isolated cache dir."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_fibsem.core.io.imageio import ImageMetadata, write_image, write_labels


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own cache folder (never the user's)."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("NAPARI_FIBSEM_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def synthetic_scene():
    from napari_fibsem.core.synthetic.scene import generate_scene

    return generate_scene(0, size=(128, 128))


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """A dataset folder with images of two sizes and dtypes; two of three are labelled."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    shapes = {"a.tif": (40, 60), "b.tif": (64, 48), "c.tif": (40, 60)}
    for i, (name, shape) in enumerate(shapes.items()):
        dtype = np.uint16 if name == "b.tif" else np.uint8
        img = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
        write_image(folder / name, img, ImageMetadata(pixel_size=(i + 1) * 1e-8, beam_type="ion"))
    for name in ("a.tif", "b.tif"):
        lab = np.zeros(shapes[name], np.uint8)
        lab[5:20, 10:30] = 1
        lab[25:30, 2:8] = 2 if name == "a.tif" else 3
        write_labels(folder / "labels" / name, lab)
    return folder
