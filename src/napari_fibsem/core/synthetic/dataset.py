"""Write synthetic scenes as a dataset folder a user's tools read unchanged.

``images/*.tif`` sit in the folder itself with ``labels/``, ``keypoints.csv`` and ``classes.yaml``
(the AutoLamella layout). The folder is built beside the target and renamed into place, so an
interrupted run never leaves a half-written dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from napari_fibsem.core.io.atomic import atomic_dir
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import ImageMetadata, write_image, write_labels
from napari_fibsem.core.io.keypoints import Keypoint, write_keypoints
from napari_fibsem.core.synthetic.scene import SceneConfig, generate_scene


@dataclass(frozen=True)
class SyntheticDatasetSummary:
    folder: Path
    n: int
    size: tuple[int, int]
    seed: int
    n_keypoints: int
    beams: dict[str, int]

    def __str__(self) -> str:
        beams = ", ".join(f"{v} {k}" for k, v in sorted(self.beams.items()))
        return (
            f"wrote {self.n} synthetic {self.size[0]}x{self.size[1]} scenes ({beams}) with labels and "
            f"{self.n_keypoints} keypoints to {self.folder}"
        )


def scene_configs(n: int, size: tuple[int, int], seed: int, beam: Literal["ion", "electron", "mixed"] = "mixed"):
    """``n`` (scene seed, config) pairs with varied content, reproducible from ``seed``.

    Every scene has a lamella; needles, landing posts, adaptors and volume blocks appear in a
    mix so a model sees each class and their absence.
    """
    rng = np.random.default_rng(seed)
    seeds = np.random.SeedSequence(seed).generate_state(n)
    for i in range(n):
        b = beam if beam != "mixed" else ("ion" if rng.random() < 0.5 else "electron")
        cfg = SceneConfig(
            size=size,
            beam=b,
            needle=bool(rng.random() < 0.75),
            landing_post=bool(rng.random() < 0.35),
            copper_adaptor=bool(rng.random() < 0.2),
            volume_block=bool(rng.random() < 0.2),
            distractors=int(rng.integers(0, 6)),
        )
        yield int(seeds[i]), cfg


def write_dataset(
    out: str | Path,
    n: int,
    size: tuple[int, int] = (1024, 1536),
    seed: int = 0,
    beam: Literal["ion", "electron", "mixed"] = "mixed",
) -> SyntheticDatasetSummary:
    """Generate ``n`` scenes into the dataset folder ``out`` (which must not exist or be empty)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not empty; choose another folder or delete it")
    with atomic_dir(out) as tmp:
        points: list[Keypoint] = []
        beams: dict[str, int] = {}
        for i, (scene_seed, cfg) in enumerate(scene_configs(n, size, seed, beam)):
            scene = generate_scene(scene_seed, cfg)
            name = f"synthetic_{i:04d}.tif"
            meta = ImageMetadata(
                pixel_size=scene.pixel_size,
                beam_type=scene.beam,  # type: ignore[arg-type]
                extra={"source": "napari-fibsem synthetic", "scene_seed": scene_seed, "needle_side": scene.needle_side},
            )
            write_image(tmp / name, scene.image, meta)
            write_labels(tmp / "labels" / name, scene.mask, ClassMap.default())
            points += [
                Keypoint(name, feat, x, y, scene.pixel_size, False, "synthetic")
                for feat, (x, y) in scene.keypoints.items()
            ]
            beams[scene.beam] = beams.get(scene.beam, 0) + 1
        write_keypoints(tmp / "keypoints.csv", points)
        ClassMap.default().save(tmp / "classes.yaml")
    return SyntheticDatasetSummary(out, n, size, seed, len(points), beams)
