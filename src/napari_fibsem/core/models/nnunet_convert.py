"""Our dataset folders -> an nnU-Net v2 raw dataset (``DatasetXXX_Name/``), without nnunetv2 installed.

Layout written (nnU-Net's ``dataset_format.md``)::

    DatasetXXX_Name/
      dataset.json                 channel_names, labels, numTraining, file_ending ".tif", ...
      imagesTr/<case>_0000.tif     one grayscale channel per case
      labelsTr/<case>.tif          uint8 class ids 0..n-1 (consecutive, as nnU-Net requires)
      imagesTs/<case>_0000.tif     unlabelled images, when asked for
      napari_fibsem_cases.csv      which source file became which case

Why ``.tif`` with ``NaturalImage2DIO`` (named in ``dataset.json`` as ``overwrite_image_reader_writer``):
nnU-Net has two readers for ``.tif``. ``Tiff3DIO`` only accepts 3D stacks (a 2D file raises "Only 3D
images are supported") and wants a ``<case>.json`` spacing sidecar; ``NaturalImage2DIO`` reads 2D
grayscale (and RGB) TIFFs as one slice with spacing (999, 1, 1) and needs no sidecar. FIB-SEM
frames are 2D, so the 2D reader is the one that works; naming it explicitly keeps nnU-Net from
guessing. Pixel values are kept as they are (uint8 or uint16), so nnU-Net's own intensity
normalisation (chosen by the channel name, z-score unless told otherwise) sees the raw counts.

Nothing is written unless every labelled pair is valid; the dataset is built in a hidden sibling
folder and renamed into place, so a crash never leaves a half-written dataset.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_fibsem.core.data.dataset import DatasetError, Sample, discover, validate
from napari_fibsem.core.io.atomic import atomic_dir
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import read_image, read_labels, write_image, write_labels

FILE_ENDING = ".tif"
READER = "NaturalImage2DIO"
METADATA_KEY = "napari_fibsem"
"""Extra key in ``dataset.json`` holding our class map (names, colours, original ids)."""
RESERVED_NAMES = ("background", "ignore")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class NnUNetConversionError(DatasetError):
    """The folders cannot become an nnU-Net dataset; the message names the file or setting."""


@dataclass(frozen=True)
class NnUNetDataset:
    """What :func:`convert_to_nnunet` wrote."""

    folder: Path
    dataset_id: int
    num_training: int
    num_test: int
    labels: dict[str, int]

    def __str__(self) -> str:
        test = f", {self.num_test} test images" if self.num_test else ""
        return (
            f"wrote nnU-Net dataset {self.folder.name}: {self.num_training} training cases{test}, "
            f"labels {self.labels} -> {self.folder}"
        )


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset042_Lamella``: nnU-Net finds datasets by this pattern (id 1..999, three digits)."""
    if not 1 <= int(dataset_id) <= 999:
        raise NnUNetConversionError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    if not _NAME.match(name):
        raise NnUNetConversionError(
            f"dataset name {name!r}: use letters, digits, '_' and '-' only (it becomes a folder name)"
        )
    return f"Dataset{int(dataset_id):03d}_{name}"


def nnunet_labels(class_map: ClassMap) -> tuple[dict[str, int], dict[int, int]]:
    """nnU-Net's ``labels`` dict and the map ``our id -> nnU-Net id``.

    nnU-Net needs ``background: 0`` and consecutive ids, so class ids with gaps (0, 1, 3) are
    renumbered (0, 1, 2); our names, colours and ids travel in ``dataset.json`` under
    :data:`METADATA_KEY` and the ``nnunet`` backend maps predictions back.
    """
    if 0 not in class_map.classes:
        raise NnUNetConversionError(
            f"nnU-Net needs class id 0 as background; this class map has ids {class_map.ids}"
        )
    labels: dict[str, int] = {}
    to_nnunet: dict[int, int] = {}
    for new_id, (cid, info) in enumerate(class_map.classes.items()):
        if cid != 0 and info.name in RESERVED_NAMES:
            raise NnUNetConversionError(
                f"class {cid} is called {info.name!r}, a name nnU-Net reserves; rename it in classes.yaml"
            )
        labels["background" if cid == 0 else info.name] = new_id
        to_nnunet[cid] = new_id
    return labels, to_nnunet


def _case_ids(samples: Sequence[Sample]) -> list[str]:
    """Unique nnU-Net case identifiers: the file stem, prefixed with its folder's name where stems repeat."""
    stems = [_SAFE.sub("_", s.image.stem) for s in samples]
    counts = {st: stems.count(st) for st in stems}
    ids = [
        st if counts[st] == 1 else f"{_SAFE.sub('_', s.image.parent.name)}_{st}"
        for st, s in zip(stems, samples)
    ]
    seen: dict[str, int] = {}
    out = []
    for cid in ids:
        n = seen.get(cid, 0)
        seen[cid] = n + 1
        out.append(cid if n == 0 else f"{cid}_{n}")
    return out


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target}: exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    prefix = target.name.split("_")[0] + "_"
    others = sorted(
        p.name for p in target.parent.glob(prefix + "*") if p.is_dir() and p.name != target.name
    ) if target.parent.is_dir() else []
    if others:
        raise FileExistsError(
            f"{target.parent}: already holds {others[0]} with the same dataset id; nnU-Net needs ids to be "
            "unique, so choose another id"
        )


def convert_to_nnunet(
    folders: str | Path | Sequence[str | Path],
    out: str | Path,
    dataset_id: int,
    name: str,
    *,
    class_map: ClassMap | None = None,
    channel_name: str = "FIB-SEM",
    include_unlabelled: bool = False,
    overwrite: bool = False,
) -> NnUNetDataset:
    """Write ``folders`` (our dataset layout) as ``out/DatasetXXX_name`` for nnU-Net v2.

    ``out`` is the ``nnUNet_raw`` folder. ``class_map`` defaults to the first folder's
    ``classes.yaml`` (else AutoLamella's). ``channel_name`` picks nnU-Net's normalisation: "CT"
    clips and scales by dataset statistics, "rescale_to_0_1", "noNorm", anything else z-score per
    image. ``include_unlabelled`` writes unlabelled images to ``imagesTs``. An existing non-empty
    target is refused unless ``overwrite``.
    """
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    if not folders:
        raise NnUNetConversionError("no dataset folders given")
    target = Path(out) / dataset_folder_name(dataset_id, name)
    _check_target(target, overwrite)
    if not channel_name.strip():
        raise NnUNetConversionError("channel_name must not be empty")
    class_map = class_map if class_map is not None else ClassMap.for_folder(folders[0])
    labels, to_nnunet = nnunet_labels(class_map)

    index = discover(folders)
    train = index.labelled
    if not train:
        raise NnUNetConversionError(
            f"no labelled images in {', '.join(map(str, folders))} (labels go in labels/ under the same "
            "file name); nnU-Net needs training cases"
        )
    validate(index, class_map)  # every label file, all problems in one error, before writing anything
    test = index.unlabelled if include_unlabelled else []
    ids = _case_ids([*train, *test])

    with atomic_dir(target) as tmp:
        lut = np.zeros(256, np.uint8)
        for cid, nid in to_nnunet.items():
            lut[cid] = nid
        rows = []
        for case, sample in zip(ids, train):
            image = read_image(sample.image)
            mask = read_labels(sample.label, class_map, shape=image.data.shape)  # type: ignore[arg-type]
            write_image(tmp / "imagesTr" / f"{case}_0000{FILE_ENDING}", image.data, image.metadata)
            write_labels(tmp / "labelsTr" / f"{case}{FILE_ENDING}", lut[mask])
            rows.append((case, "train", sample.image, sample.label))
        for case, sample in zip(ids[len(train) :], test):
            image = read_image(sample.image)
            write_image(tmp / "imagesTs" / f"{case}_0000{FILE_ENDING}", image.data, image.metadata)
            rows.append((case, "test", sample.image, ""))
        _write_dataset_json(tmp, labels, to_nnunet, class_map, channel_name, name, len(train), folders)
        with open(tmp / "napari_fibsem_cases.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", "split", "image", "label"])
            writer.writerows((c, s, str(i), str(lab)) for c, s, i, lab in rows)
    return NnUNetDataset(target, int(dataset_id), len(train), len(test), labels)


def _write_dataset_json(
    folder: Path,
    labels: dict[str, int],
    to_nnunet: dict[int, int],
    class_map: ClassMap,
    channel_name: str,
    name: str,
    num_training: int,
    sources: Sequence[Path],
) -> None:
    data = {
        "channel_names": {"0": channel_name},
        "labels": labels,
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": READER,
        "name": name,
        "description": "FIB-SEM segmentation converted by napari-fibsem from "
        + ", ".join(str(s) for s in sources),
        METADATA_KEY: {
            "class_map": class_map.to_dict()["classes"],
            "nnunet_ids": {str(cid): nid for cid, nid in to_nnunet.items()},
        },
    }
    (folder / "dataset.json").write_text(json.dumps(data, indent=2) + "\n")

