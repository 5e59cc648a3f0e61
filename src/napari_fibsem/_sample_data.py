"""npe2 sample data: a synthetic FIB-SEM scene with its class labels."""

from __future__ import annotations

from napari_fibsem._colormap import labels_layer_kwargs
from napari_fibsem.core.io.classes import ClassMap

SAMPLE_SIZE = (1024, 1536)


def _sample(beam: str, seed: int) -> list[tuple]:
    from napari_fibsem.core.synthetic.scene import generate_scene

    scene = generate_scene(seed, size=SAMPLE_SIZE, beam=beam, landing_post=beam == "electron")
    name = f"synthetic {beam} scene"
    meta = {"pixel_size": scene.pixel_size, "beam_type": scene.beam, "keypoints": scene.keypoints}
    return [
        (scene.image, {"name": name, "metadata": meta}, "image"),
        (scene.mask, labels_layer_kwargs(ClassMap.default(), f"{name} labels"), "labels"),
    ]


def sample_ion() -> list[tuple]:
    """An ion-beam view: lamella in its trench, needle, curtaining."""
    return _sample("ion", seed=1)


def sample_electron() -> list[tuple]:
    """An electron-beam view with a landing post."""
    return _sample("electron", seed=2)
