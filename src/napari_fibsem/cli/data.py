"""Dataset commands: ``synth``, ``check``, ``import-dataset``, ``objects`` and ``to-nnunet``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from napari_fibsem.cli._common import ImageBar, fail, parse_size


def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to create (must not exist or be empty).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of scenes.")] = 20,
    size: Annotated[str, typer.Option(help="Image size HEIGHTxWIDTH.")] = "1024x1536",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same dataset.")] = 0,
    beam: Annotated[str, typer.Option(help="ion, electron or mixed.")] = "mixed",
) -> None:
    """Write a synthetic FIB-SEM dataset: images, labels/, keypoints.csv, classes.yaml."""
    from napari_fibsem.core.synthetic.dataset import write_dataset

    if beam not in ("ion", "electron", "mixed"):
        raise typer.BadParameter(f"--beam must be ion, electron or mixed, got {beam!r}")
    try:
        summary = write_dataset(out, n=n, size=parse_size(size), seed=seed, beam=beam)
    except (FileExistsError, ValueError) as e:
        fail(str(e))
    typer.echo(summary)


def check(
    folders: Annotated[list[Path], typer.Argument(help="Dataset folder(s): images with labels/ inside.")],
    classes: Annotated[Path | None, typer.Option(help="Class map YAML (default: the folder's classes.yaml or AutoLamella's).")] = None,
) -> None:
    """Check dataset folders: pairs, unlabelled images, label values and sizes."""
    from napari_fibsem.core.data.dataset import discover, validate
    from napari_fibsem.core.io.classes import ClassMap

    try:
        class_map = ClassMap.load(classes) if classes else ClassMap.for_folder(folders[0])
        index = discover(folders)
        typer.echo(index.summary())
        for s in index.unlabelled:
            typer.echo(f"  unlabelled: {s.image}")
        validate(index, class_map)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"all {len(index.labelled)} labels valid against classes {class_map.names}")


def import_dataset(
    source: Annotated[Path, typer.Argument(help="Local copy of a HuggingFace dataset (root, hub-cache folder or one .parquet file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create: <out>/<config>/<split>/ dataset folders.")],
    config: Annotated[list[str] | None, typer.Option("--config", help="Config to import (repeat for several; default all), e.g. waffle.")] = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Split to import (repeat for several; default all), e.g. train.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous import in --out.")] = False,
) -> None:
    """Import the AutoLamella dataset's parquet shards (HuggingFace layout) as dataset folders."""
    from napari_fibsem.core.data.import_dataset import ImportDatasetError
    from napari_fibsem.core.data.import_dataset import import_dataset as run_import

    bar = ImageBar()
    try:
        summary = run_import(source, out, configs=config, splits=split, overwrite=overwrite, on_progress=bar.update)
    except (ImportDatasetError, ImportError, OSError) as e:
        fail(str(e))
    finally:
        bar.close()
    typer.echo(summary)


def objects(
    folder: Annotated[Path, typer.Argument(help="Dataset folder: images with labels/ inside.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="COCO JSON to write (default: FOLDER/objects_coco.json).")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Per-object CSV to write (default: FOLDER/objects.csv).")] = None,
    min_size: Annotated[int, typer.Option(min=0, help="Drop objects smaller than this many pixels.")] = 64,
    fmt: Annotated[str, typer.Option("--format", help="COCO segmentation: polygon (outer boundary, simplified) or rle (exact).")] = "polygon",
    connectivity: Annotated[int, typer.Option(help="Pixels touching by an edge (4) or also by a corner (8) are one object.")] = 8,
    classes: Annotated[Path | None, typer.Option(help="Class map YAML (default: the folder's classes.yaml or AutoLamella's).")] = None,
) -> None:
    """Instances, boxes and COCO JSON from a dataset folder's class masks (one object per connected region)."""
    from napari_fibsem.core.data.objects import write_objects
    from napari_fibsem.core.io.classes import ClassMap

    if fmt not in ("polygon", "rle"):
        raise typer.BadParameter(f"--format must be polygon or rle, got {fmt!r}")
    if connectivity not in (4, 8):
        raise typer.BadParameter(f"--connectivity must be 4 or 8, got {connectivity}")
    bar = ImageBar()
    try:
        class_map = ClassMap.load(classes) if classes else None
        summary = write_objects(folder, out, csv, class_map=class_map, min_size=min_size, connectivity=connectivity,
                                segmentation=fmt, on_progress=bar.update)  # fmt: skip
    except (ValueError, OSError) as e:
        fail(str(e))
    finally:
        bar.close()
    typer.echo(summary)


def to_nnunet(
    folders: Annotated[list[Path], typer.Argument(help="Dataset folder(s): images with labels/ inside.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The nnUNet_raw folder; the dataset is written to DatasetXXX_NAME/ inside it.")],
    dataset_id: Annotated[int, typer.Option("--id", help="nnU-Net dataset id, 1-999.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name: letters, digits, _ and -.")],
    classes: Annotated[Path | None, typer.Option(help="Class map YAML (default: the first folder's classes.yaml or AutoLamella's).")] = None,
    channel_name: Annotated[str, typer.Option(help="nnU-Net channel name; it picks the normalisation ('CT', 'rescale_to_0_1', 'noNorm'; anything else: z-score per image).")] = "FIB-SEM",
    test_images: Annotated[bool, typer.Option("--test-images/--no-test-images", help="Also write unlabelled images to imagesTs/.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset folder of that id and name.")] = False,
) -> None:
    """Convert dataset folders to an nnU-Net v2 raw dataset (imagesTr/, labelsTr/, dataset.json); needs no nnunetv2."""
    from napari_fibsem.core.io.classes import ClassMap
    from napari_fibsem.core.models.nnunet_convert import convert_to_nnunet

    try:
        class_map = ClassMap.load(classes) if classes else None
        result = convert_to_nnunet(
            folders,
            out,
            dataset_id,
            name,
            class_map=class_map,
            channel_name=channel_name,
            include_unlabelled=test_images,
            overwrite=overwrite,
        )
    except (FileExistsError, ValueError) as e:
        fail(str(e))
    typer.echo(result)
    fold = "0" if result.num_training >= 5 else "all"  # nnU-Net's 5-fold split needs 5 cases
    typer.echo(
        f"next: export nnUNet_raw={out.resolve()} (and nnUNet_preprocessed, nnUNet_results), then "
        f"nnUNetv2_plan_and_preprocess -d {dataset_id} -c 2d && nnUNetv2_train {dataset_id} 2d {fold}; "
        "the trainer folder under nnUNet_results loads with load_model()"
    )
