"""Dataset folders: image/label pairs, validation, seeded splits and a torch ``Dataset``.

Layout (AutoLamella's): images in a folder, labels as uint8 class-index TIFFs under the same file
name in ``labels/`` inside it (or in a separate label folder given explicitly). Sizes may differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_fibsem.core.data.scaling import check_input_scale, resize_image, resize_labels, scaled_shape
from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import ImageIOError, list_tiffs, read_image, read_labels

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""An augmentation hook: ``(image, mask, rng) -> (image, mask)``, applied to numpy arrays."""


class DatasetError(FibsemError, ValueError):
    """A dataset folder cannot be used; the message names the folder or file."""


@dataclass(frozen=True)
class Sample:
    """One image and its label file (``label`` is None when the image is unlabelled)."""

    image: Path
    label: Path | None

    @property
    def name(self) -> str:
        return self.image.name


@dataclass(frozen=True)
class DatasetIndex:
    """All samples found in one or several folders."""

    samples: tuple[Sample, ...]

    @property
    def labelled(self) -> list[Sample]:
        return [s for s in self.samples if s.label is not None]

    @property
    def unlabelled(self) -> list[Sample]:
        return [s for s in self.samples if s.label is None]

    def summary(self) -> str:
        return f"{len(self.samples)} images, {len(self.labelled)} labelled, {len(self.unlabelled)} unlabelled"


def label_path_for(image: str | Path, label_dir: str | Path | None = None) -> Path:
    """Where the label of ``image`` lives: ``label_dir/<name>`` or ``<image folder>/labels/<name>``."""
    image = Path(image)
    return Path(label_dir) / image.name if label_dir is not None else image.parent / "labels" / image.name


def discover(
    image_dirs: str | Path | Sequence[str | Path],
    label_dirs: str | Path | Sequence[str | Path] | None = None,
) -> DatasetIndex:
    """Pair every TIFF in ``image_dirs`` with its label (same name; label ``.tif``/``.tiff`` either way).

    ``label_dirs`` (one per image dir) defaults to each folder's ``labels/``.
    """
    image_dirs = [image_dirs] if isinstance(image_dirs, (str, Path)) else list(image_dirs)
    if label_dirs is None:
        label_list: list[Path | None] = [None] * len(image_dirs)
    else:
        label_list = (
            [Path(label_dirs)] if isinstance(label_dirs, (str, Path)) else [Path(p) for p in label_dirs]
        )
        if len(label_list) != len(image_dirs):
            raise DatasetError(f"{len(image_dirs)} image folders but {len(label_list)} label folders")
    samples: list[Sample] = []
    for folder, ldir in zip(image_dirs, label_list):
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: not a folder")
        if ldir is not None and not ldir.is_dir():
            raise DatasetError(f"{ldir}: label folder does not exist")
        for img in list_tiffs(folder):
            samples.append(Sample(img, _find_label(img, ldir)))
    if not samples:
        raise DatasetError(f"no TIFF images found in {', '.join(str(d) for d in image_dirs)}")
    return DatasetIndex(tuple(samples))


def _find_label(image: Path, label_dir: Path | None) -> Path | None:
    base = label_path_for(image, label_dir)
    for cand in (base, base.with_suffix(".tif"), base.with_suffix(".tiff")):
        if cand.is_file():
            return cand
    return None


def validate(index: DatasetIndex, class_map: ClassMap) -> None:
    """Check every labelled pair fully (readable, 2D, same size, ids in the class map).

    Raises one :class:`DatasetError` listing every bad file, so a
    user fixes them in one go rather than one per run.
    """
    problems = []
    for s in index.labelled:
        try:
            img = read_image(s.image).data
            read_labels(s.label, class_map, shape=img.shape)  # type: ignore[arg-type]
        except (ImageIOError, ValueError) as e:
            problems.append(str(e))
    if problems:
        raise DatasetError(f"{len(problems)} problem(s) in the dataset:\n  " + "\n  ".join(problems))


def split(
    items: Sequence,
    fractions: Sequence[float] = (0.8, 0.2),
    seed: int = 0,
    groups: Sequence | None = None,
) -> list[list]:
    """Seeded shuffled split into parts with the given fractions.

    With ``groups`` (one key per item), all items of a group land in the same part, so images of
    one lamella/session don't leak between train and validation.
    """
    fractions = np.asarray(fractions, dtype=float)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    keys = list(range(len(items))) if groups is None else list(dict.fromkeys(groups))
    if groups is not None and len(groups) != len(items):
        raise ValueError(f"{len(items)} items but {len(groups)} group keys")
    order = rng.permutation(len(keys))
    bounds = np.round(np.cumsum(fractions) * len(keys)).astype(int)
    starts = np.concatenate([[0], bounds[:-1]])
    parts_keys = [{keys[i] for i in order[a:b]} for a, b in zip(starts, bounds)]
    if groups is None:
        return [[items[i] for i in sorted(pk)] for pk in parts_keys]
    return [[it for it, g in zip(items, groups) if g in pk] for pk in parts_keys]


def scale_to_unit(image: np.ndarray) -> np.ndarray:
    """Default normalisation: divide by the dtype's maximum (uint8 → /255, uint16 → /65535)."""
    maxval = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
    return image.astype(np.float32) / np.float32(maxval)


class SegmentationDataset:
    """A torch-style map dataset of (image tensor 1xHxW float32, mask tensor HxW int64).

    ``transform`` (augmentation) runs on numpy arrays before normalisation with a per-item RNG
    derived from ``seed``, the epoch (:meth:`set_epoch`) and the index, so runs are reproducible
    with any number of DataLoader workers. ``normalize`` must be the same function inference uses.
    ``input_scale`` resizes every pair as the model's ``predict`` resizes its input (images by area
    averaging, masks by nearest neighbour) before the transform.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        class_map: ClassMap | None = None,
        transform: Transform | None = None,
        normalize: Callable[[np.ndarray], np.ndarray] = scale_to_unit,
        seed: int = 0,
        input_scale: float = 1.0,
    ) -> None:
        unlabelled = [str(s.image) for s in samples if s.label is None]
        if unlabelled:
            raise DatasetError(f"{len(unlabelled)} image(s) have no labels, e.g. {unlabelled[0]}")
        self.samples = list(samples)
        self.class_map = class_map or ClassMap.default()
        self.transform = transform
        self.normalize = normalize
        self.seed = seed
        self.input_scale = check_input_scale(input_scale)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The (image, mask) arrays of item ``i``, validated and resized by ``input_scale``."""
        s = self.samples[i]
        image = read_image(s.image).data
        mask = read_labels(s.label, self.class_map, shape=image.shape)  # type: ignore[arg-type]
        if self.input_scale != 1.0:
            shape = scaled_shape(image.shape, self.input_scale)
            image, mask = resize_image(image, shape), resize_labels(mask, shape)
        return image, mask

    def __getitem__(self, i: int):
        import torch

        image, mask = self.load(i)
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, mask = self.transform(image, mask, rng)
        x = torch.from_numpy(np.ascontiguousarray(self.normalize(image), dtype=np.float32))[None]
        y = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))
        return x, y
