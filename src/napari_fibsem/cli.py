"""The ``napari-fibsem`` command line: every job a widget starts can also run from here.

Commands import their core modules inside the function, so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

app = typer.Typer(
    name="napari-fibsem",
    help="Machine learning on FIB-SEM images: data, models, detection and supervised automation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH such as 1024x1536, got {text!r}") from None
    if h < 32 or w < 32:
        raise typer.BadParameter(f"size {text!r} is too small (at least 32x32)")
    return h, w


@app.command()
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
        summary = write_dataset(out, n=n, size=_parse_size(size), seed=seed, beam=beam)
    except (FileExistsError, ValueError) as e:
        _fail(str(e))
    typer.echo(summary)


@app.command()
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
        _fail(str(e))
    typer.echo(f"all {len(index.labelled)} labels valid against classes {class_map.names}")


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config YAML (OpenFIBSEM keys work; see examples/train_config.yaml).")],
    nprocs: Annotated[int, typer.Option("--nprocs", min=1, help="Local processes for data-parallel training (gloo on CPU, NCCL on GPUs). Under torchrun keep 1.")] = 1,
) -> None:
    """Train a segmentation model: best.pt / last.pt bundles, metrics.csv. Ctrl-C stops and saves last.pt for resuming."""
    from napari_fibsem.core.training import TrainingError, load_config
    from napari_fibsem.core.training.ddp import cleanup, env_context, train_distributed

    try:
        cfg = load_config(config)
    except ValueError as e:
        _fail(str(e))
    ctx = env_context()
    if nprocs > 1 and ctx.enabled:
        _fail("--nprocs starts its own processes; under torchrun leave it at 1")
    interrupted = ok = False
    try:
        if nprocs > 1:
            typer.echo(f"training with {nprocs} processes")
            result = train_distributed(cfg, nprocs, write=typer.echo)
        else:
            result, interrupted = _train_with_progress_bar(cfg, ctx)
        ok = True
    except (ValueError, ImportError, TrainingError) as e:
        _fail(str(e))
    finally:
        if ctx.enabled:
            cleanup(barrier=ok)
    if not ctx.is_main:
        return
    if result.best_path is not None:
        typer.echo(f"best: {result.best_path} ({result.monitor} {result.best_value:.4f} at epoch {result.best_epoch})")
    if result.last_path is not None:
        typer.echo(f"last: {result.last_path} (epoch {result.epochs_completed}, step {result.global_step}/{result.total_steps})")
    if result.cancelled:
        typer.echo(f"stopped early: resume with checkpoint: {result.last_path}")
        if interrupted:
            raise typer.Exit(code=130)


def _train_with_progress_bar(cfg, ctx):
    """Run the trainer with a tqdm bar; the first Ctrl-C asks it to stop and save, a second one kills."""
    import signal

    from tqdm import tqdm

    from napari_fibsem.core.training.loop import Trainer

    bar = None

    def on_progress(p) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, initial=p.step, unit="step", dynamic_ncols=True)
        bar.n = p.step
        bar.set_description(f"epoch {p.epoch}/{cfg.epochs}")
        post = {"loss": f"{p.loss:.4f}"} if p.loss is not None else {}
        if p.metrics.get("mean_fg_iou") is not None:
            post["fg_iou"] = f"{p.metrics['mean_fg_iou']:.3f}"
        bar.set_postfix(post, refresh=True)

    trainer = Trainer(cfg, on_progress=on_progress, write=tqdm.write, dist_context=ctx)
    interrupted = False

    def on_sigint(signum, frame) -> None:
        nonlocal interrupted
        interrupted = True
        tqdm.write("stopping after this step and saving last.pt (Ctrl-C again to kill)")
        trainer.cancel()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return trainer.run(), interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()


@app.command()
def view(
    paths: Annotated[list[Path], typer.Argument(help="TIFF files or dataset folders to open.")],
) -> None:
    """Open TIFFs or dataset folders in napari (needs a display and napari-fibsem[napari])."""
    try:
        import napari
    except ImportError:
        _fail("napari is not installed: pip install 'napari-fibsem[napari]'")
    viewer = napari.Viewer(title="napari-fibsem")
    for p in paths:
        viewer.open(str(p), plugin="napari-fibsem")
    napari.run()


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's outputs (replaced on each run).")] = Path("outputs/demo"),
    n: Annotated[int, typer.Option("--n", min=1, help="Number of synthetic training scenes.")] = 60,
    size: Annotated[str, typer.Option(help="Image size HEIGHTxWIDTH.")] = "512x768",
    epochs: Annotated[int, typer.Option(min=0, help="Training epochs (0: skip training and prediction).")] = 44,
    unseen: Annotated[int, typer.Option(min=1, help="Unseen scenes (another seed) the trained model is scored on.")] = 24,
    loop_scenes: Annotated[int, typer.Option(min=4, help="Simulator images to train the closed loop's model on.")] = 48,
    loop_epochs: Annotated[int, typer.Option(min=0, help="Epochs for the closed loop's model (0: skip the closed loop).")] = 5,
    event_movies: Annotated[int, typer.Option(min=5, help="Synthetic movies for the event pipeline.")] = 16,
    event_epochs: Annotated[int, typer.Option(min=0, help="Epochs for the event model (0: stop the event part after `events set`).")] = 24,
    viewer: Annotated[bool, typer.Option("--viewer/--no-viewer", help="Open napari when a display exists.")] = True,
) -> None:
    """The end-to-end demo on synthetic data, each part timed: dataset, training, prediction on unseen
    scenes and their scores; the closed alignment loop on the simulator with a trained model and its
    report; the event pipeline (synth, extract, index, set, train, predict) with its test F1. Opens
    napari on the result when a display exists."""
    from napari_fibsem.core.training.progress import TrainingError
    from napari_fibsem.demo import run_demo

    try:
        result = run_demo(out, n=n, size=_parse_size(size), epochs=epochs, write=typer.echo, loop_scenes=loop_scenes,
                          loop_epochs=loop_epochs, event_movies=event_movies, event_epochs=event_epochs,
                          unseen=unseen)  # fmt: skip
    except (ValueError, TrainingError) as e:
        _fail(str(e))
    typer.echo(f"demo outputs in {result.out.resolve()}")
    for what, path in (("labelled dataset", result.dataset), ("its model (for proposals)", result.model),
                       ("closed-loop report", result.loop_report), ("event model", result.event_model)):  # fmt: skip
        if path is not None and Path(path).exists():
            typer.echo(f"  {what}: {Path(path).resolve()}")
    if viewer and _has_display():
        try:
            import napari

            from napari_fibsem._demo_viewer import open_demo
        except ImportError:
            _fail("napari is not installed: pip install 'napari-fibsem[napari]'")
        open_demo(result.dataset, result.model)
        typer.echo("napari: Getting started shows the workflow; Label segmentation is open on the dataset "
                   "with the model ready ('Propose for this image')")  # fmt: skip
        napari.run()
    else:
        typer.echo("no display (or --no-viewer): in napari, Plugins > napari-fibsem > Getting started; "
                   f"or `napari-fibsem view {result.dataset}`")  # fmt: skip


def _has_display() -> bool:
    import os
    import sys

    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@app.command("export-onnx")
def export_onnx_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint bundle or OpenFIBSEM checkpoint dict (torch).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write (replaced atomically).")],
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 17,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare ONNX and torch on a test image.")] = True,
) -> None:
    """Export a torch checkpoint to ONNX: any image size, class map and normalisation stored inside."""
    import numpy as np

    from napari_fibsem.core.models import ModelLoadError, load_model
    from napari_fibsem.core.models.export import export_onnx

    try:
        model = load_model(checkpoint, device="cpu")
        if model.backend != "smp":
            _fail(f"{checkpoint}: only torch (smp) checkpoints can be exported, not {model.backend!r} models")
        export_onnx(model, out, opset=opset)
        typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.num_classes} classes {model.class_map.names})")
        if check:
            image = np.random.default_rng(0).integers(0, 256, (3 * model.stride + 5, 4 * model.stride + 3), np.uint8)
            diff = np.abs(load_model(out).predict(image).probs - model.predict(image).probs).max()
            typer.echo(f"check: max |probability difference| ONNX vs torch = {diff:.2e}")
    except (ModelLoadError, ImportError, ValueError) as e:
        _fail(str(e))


class _ImageBar:
    """A tqdm bar fed by core ``on_progress(done, total)`` callbacks; created on the first call."""

    def __init__(self) -> None:
        self._bar = None

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="image", dynamic_ncols=True)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@app.command("import-dataset")
def import_dataset_command(
    source: Annotated[Path, typer.Argument(help="Local copy of a HuggingFace dataset (root, hub-cache folder or one .parquet file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create: <out>/<config>/<split>/ dataset folders.")],
    config: Annotated[list[str] | None, typer.Option("--config", help="Config to import (repeat for several; default all), e.g. waffle.")] = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Split to import (repeat for several; default all), e.g. train.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous import in --out.")] = False,
) -> None:
    """Import the AutoLamella dataset's parquet shards (HuggingFace layout) as dataset folders."""
    from napari_fibsem.core.data.import_dataset import ImportDatasetError, import_dataset

    bar = _ImageBar()
    on_progress = bar.update

    try:
        summary = import_dataset(source, out, configs=config, splits=split, overwrite=overwrite, on_progress=on_progress)
    except (ImportDatasetError, ImportError, OSError) as e:
        _fail(str(e))
    finally:
        bar.close()
    typer.echo(summary)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Checkpoint bundle, OpenFIBSEM checkpoint or ONNX model.")],
    images: Annotated[list[Path], typer.Argument(help="Image folder(s) and/or TIFF files.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Label folder (default: labels/ beside each image).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing label files (they may be manual labels).")] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA when available).")] = None,
    tile_size: Annotated[int | None, typer.Option(min=32, help="Predict larger images in overlapping tiles of this size.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images (or tiles) per network call.")] = 4,
    probs: Annotated[Path | None, typer.Option("--probs", help="Also save float32 class probabilities (C x H x W TIFFs) here.")] = None,
) -> None:
    """Predict label masks for TIFF images: uint8 class-index TIFFs, written atomically."""
    from napari_fibsem.core.models import ModelLoadError, load_model
    from napari_fibsem.core.models.inference import predict_folder

    options = {"batch_size": batch_size} if tile_size is None else {"batch_size": batch_size, "tile_size": tile_size}
    bar = _ImageBar()
    on_progress = bar.update

    try:
        net = load_model(model, device=device, **options)
        summary = predict_folder(net, images, out, overwrite=overwrite, batch_size=batch_size, probs_dir=probs, on_progress=on_progress)
    except (ModelLoadError, ImportError, ValueError, OSError, RuntimeError) as e:
        _fail(str(e))
    finally:
        bar.close()
    for path in summary.skipped:
        typer.echo(f"skipped (labels exist): {path}")
    for path, reason in summary.failed:
        typer.secho(f"failed: {reason}" if str(path) in reason else f"failed: {path}: {reason}", fg=typer.colors.RED, err=True)
    typer.echo(summary)
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
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
    bar = _ImageBar()
    try:
        class_map = ClassMap.load(classes) if classes else None
        summary = write_objects(folder, out, csv, class_map=class_map, min_size=min_size, connectivity=connectivity,
                                segmentation=fmt, on_progress=bar.update)  # fmt: skip
    except (ValueError, OSError) as e:
        _fail(str(e))
    finally:
        bar.close()
    typer.echo(summary)


@app.command("to-nnunet")
def to_nnunet_command(
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
        _fail(str(e))
    typer.echo(result)
    fold = "0" if result.num_training >= 5 else "all"  # nnU-Net's 5-fold split needs 5 cases
    typer.echo(
        f"next: export nnUNet_raw={out.resolve()} (and nnUNet_preprocessed, nnUNet_results), then "
        f"nnUNetv2_plan_and_preprocess -d {dataset_id} -c 2d && nnUNetv2_train {dataset_id} 2d {fold}; "
        "the trainer folder under nnUNet_results loads with load_model()"
    )


@app.command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image folder(s) and/or TIFF files.")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Checkpoint to segment with (any format load_model reads).")] = None,
    masks: Annotated[Path | None, typer.Option("--masks", help="Instead of a model: folder of label TIFFs named like the images.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Keypoints CSV to write.")] = Path("detections.csv"),
    feature: Annotated[list[str] | None, typer.Option("--feature", "-f", help="Feature to locate (repeat; default all).")] = None,
    pixel_size: Annotated[float | None, typer.Option(help="Metres per pixel for images whose metadata has none.")] = None,
    min_size: Annotated[int | None, typer.Option(min=0, help="Ignore objects smaller than this (px; default 1e-4 of the image).")] = None,
    draw: Annotated[Path | None, typer.Option("--draw", help="Also save a PNG per image with the points drawn here.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA when available).")] = None,
) -> None:
    """Locate features (NeedleTip, LamellaCentre, ...) and write them as a keypoints CSV."""
    from napari_fibsem.core.detection.batch import detect_images
    from napari_fibsem.core.detection.catalogue import get_feature
    from napari_fibsem.core.io.keypoints import write_keypoints
    from napari_fibsem.core.models import ModelLoadError, load_model
    from napari_fibsem.core.models.inference import collect_images

    if (model is None) == (masks is None):
        _fail("give either --model or --masks")
    bar = _ImageBar()
    try:
        for f in feature or []:
            get_feature(f)
        paths = collect_images(images)
        net = load_model(model, device=device) if model is not None else None
        summary = detect_images(paths, net, masks, feature or None, pixel_size, min_size, draw, bar.update)
    except (KeyError, ModelLoadError, ImportError, ValueError, OSError) as e:
        _fail(str(e).strip("'\""))
    finally:
        bar.close()
    for path, reason in summary.failed:
        typer.secho(f"failed: {path}: {reason}", fg=typer.colors.RED, err=True)
    write_keypoints(out, summary.points)
    typer.echo(f"{summary}; wrote {out}")
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
def evaluate(
    config: Annotated[Path, typer.Option("--config", "-c", help="Evaluation YAML (data_path, images_path, save_path, checkpoints, thresholds ...).")],
) -> None:
    """Compare checkpoints on labelled keypoints: eval.csv, accuracy.csv, plots and a report."""
    from napari_fibsem.core.evaluation.run import load_eval_config, run_evaluation
    from napari_fibsem.core.models import ModelLoadError
    from napari_fibsem.core.training.config import ConfigError

    bar = _ImageBar()
    try:
        cfg = load_eval_config(config)
        result = run_evaluation(cfg, on_progress=bar.update)
    except (ConfigError, ModelLoadError, ImportError, ValueError, OSError) as e:
        _fail(str(e))
    finally:
        bar.close()
    from napari_fibsem.core.evaluation.report import tables

    title, head, body = tables(result)[0]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for row in body:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    typer.echo(f"wrote {', '.join(p.name for p in result.files.values())} to {cfg.save_path}")
    shown = ([result.files[k] for k in ("scatter", "histogram", "accuracy_plot") if k in result.files]
             if cfg.show_eval_plot else []) + (result.det_plots if cfg.show_det_plot else [])  # fmt: skip
    if shown:
        _show_pictures(shown)


def _show_pictures(paths: list[Path]) -> None:
    """Open saved PNGs in matplotlib windows (the config's show_* keys); skipped without a display."""
    if not _has_display():
        typer.echo(f"no display: not showing {len(paths)} picture(s); they are saved in {paths[0].parent}")
        return
    import matplotlib.pyplot as plt

    for p in paths:
        fig = plt.figure(p.name)
        fig.add_subplot().imshow(plt.imread(p))
        fig.axes[0].set_axis_off()
    plt.show()


events_app = typer.Typer(help="Event pipeline: annotated movies -> event crops (-> catalogue, training, prediction).",
                          no_args_is_help=True)  # fmt: skip
app.add_typer(events_app, name="events")
_CATALOGUE_URI_HELP = "Catalogue: sqlite:///path or mongodb://host/db (default: events.sqlite in ROOT)."


@events_app.command("synth")
def events_synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create (must not exist or be empty): dataset folders inside.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of movies.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same movies.")] = 0,
    frames: Annotated[int, typer.Option(min=8, help="Frames per movie.")] = 24,
    size: Annotated[str, typer.Option(help="Frame size HEIGHTxWIDTH.")] = "128x160",
    events: Annotated[int, typer.Option(min=0, help="Split events (annotated) per movie.")] = 3,
    datasets: Annotated[int, typer.Option(min=1, help="Dataset folders (day1, day2 ...) the movies are dealt to.")] = 2,
) -> None:
    """Write synthetic movies with napari point CSVs and db_manual.yaml metadata: input for `events extract`."""
    from napari_fibsem.core.events.synthetic_dataset import write_event_movies

    try:
        summary = write_event_movies(out, n=n, seed=seed, frames=frames, size=_parse_size(size), events=events,
                                     datasets=datasets)  # fmt: skip
    except (FileExistsError, ValueError) as e:
        _fail(str(e))
    typer.echo(summary)
    typer.echo(f"next: napari-fibsem events extract {out} --out EVENTS_ROOT --size 32 --negatives 12")


@events_app.command("extract")
def events_extract(
    parent: Annotated[Path, typer.Argument(help="Folder of dataset folders: stacks + napari point CSVs (+ db_manual.yaml).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Events root: <dataset>/<event id>/ folders are written here.")],
    size: Annotated[int, typer.Option(min=8, help="Crop size in pixels (clamped to the image).")] = 256,
    before: Annotated[int, typer.Option(min=0, help="Frames kept before an event's first annotated frame.")] = 2,
    after: Annotated[int, typer.Option(min=0, help="Frames kept after its last annotated frame.")] = 2,
    sigma: Annotated[float, typer.Option(min=0.1, help="Ground-truth Gaussian sigma in pixels.")] = 2.0,
    negatives: Annotated[int, typer.Option(min=0, help="Negative crops per movie (auto_negatives).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed for negative sampling.")] = 0,
) -> None:
    """Cut every annotated event (and negatives) into event folders with Gaussian ground truth."""
    from napari_fibsem.core.events.ingest import ingest

    try:
        summary = ingest(parent, out, size, before, after, sigma, negatives, seed)
    except (ValueError, OSError) as e:
        _fail(str(e))
    typer.echo(f"{summary}; wrote {out}")


@events_app.command("index")
def events_index(
    root: Annotated[Path, typer.Argument(help="Events root written by `events extract`.")],
    uri: Annotated[str | None, typer.Option(help=_CATALOGUE_URI_HELP)] = None,
) -> None:
    """(Re)build the catalogue of an events root (SQLite or MongoDB) from its event.yaml files."""
    from napari_fibsem.core.events.catalogue import open_catalogue

    try:
        cat = open_catalogue(root, uri)
        n = cat.rebuild()
    except (ValueError, ImportError, OSError) as e:
        _fail(str(e))
    typer.echo(f"indexed {n} event(s) in {getattr(cat, 'db_path', cat)}")


@events_app.command("set")
def events_set(
    root: Annotated[Path, typer.Argument(help="Events root (indexed with `events index`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for training sets.")],
    where: Annotated[list[str] | None, typer.Option("--where", help="key=value (repeat; value a,b = any of; key>=v, key<=v ranges).")] = None,
    split: Annotated[str, typer.Option(help="train,val,test fractions.")] = "0.7,0.15,0.15",
    seed: Annotated[int, typer.Option(help="Seed of the grouped split.")] = 0,
    uri: Annotated[str | None, typer.Option(help=_CATALOGUE_URI_HELP)] = None,
) -> None:
    """A training set from a query, split by source movie; the same query reuses its folder."""
    from napari_fibsem.core.events.catalogue import open_catalogue
    from napari_fibsem.core.events.training_sets import read_set, training_set

    query: dict = {}
    try:
        for item in where or []:
            for op, bound in ((">=", "min"), ("<=", "max"), ("=", None)):
                if op in item:
                    key, value = (t.strip() for t in item.split(op, 1))
                    parsed = yaml.safe_load(value) if bound else [yaml.safe_load(v) for v in value.split(",")]
                    if bound:
                        query.setdefault(key, {})[bound] = parsed
                    else:
                        query[key] = parsed[0] if len(parsed) == 1 else parsed
                    break
            else:
                raise ValueError(f"--where {item!r}: expected key=value, key>=value or key<=value")
        fractions = tuple(float(v) for v in split.split(","))
        folder = training_set(open_catalogue(root, uri), query, out, fractions, seed)  # type: ignore[arg-type]
    except (ValueError, ImportError, OSError) as e:
        _fail(str(e))
    sizes = {k: len(v) for k, v in read_set(folder)["events"].items()}
    typer.echo(f"{folder}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))


@events_app.command("train")
def events_train(
    settings: Annotated[Path, typer.Argument(help="Event settings YAML (deep-events keys; see examples/event_settings.yaml).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (replaces output: of the settings).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (replaces device:).")] = None,
    nprocs: Annotated[int, typer.Option("--nprocs", min=1, help="Local processes for data-parallel training (gloo on CPU, NCCL on GPUs). Under torchrun keep 1.")] = 1,
) -> None:
    """Train an event heatmap U-Net: best.pt (threshold chosen on val), performance.yaml (test scores). Ctrl-C stops."""
    import signal

    from tqdm import tqdm

    from napari_fibsem.core.events.distributed import train_events_distributed
    from napari_fibsem.core.events.settings import load_settings, parse_settings
    from napari_fibsem.core.events.train import train_events
    from napari_fibsem.core.training.ddp import cleanup, env_context
    from napari_fibsem.core.training.progress import StopFlag, TrainingError

    try:
        cfg = load_settings(settings)
        if out is not None or device is not None:
            data = {**cfg.model_dump(), **({"output": out} if out is not None else {}),
                    **({"device": device} if device is not None else {})}  # fmt: skip
            cfg = parse_settings(data, source=f"{settings} (with the command-line options)")
    except ValueError as e:
        _fail(str(e))
    ctx = env_context()
    if nprocs > 1 and ctx.enabled:
        _fail("--nprocs starts its own processes; under torchrun leave it at 1")
    bar = None
    stop = StopFlag()

    def on_progress(p) -> None:
        nonlocal bar
        if p.phase == "setup":
            tqdm.write(p.message)
        if bar is None:
            bar = tqdm(total=p.total, unit="step", dynamic_ncols=True)
        bar.n = p.step
        bar.set_description(f"epoch {p.epoch}/{cfg.epochs}")
        post = {"loss": f"{p.loss:.4f}"} if p.loss is not None else {}
        if p.metrics.get("val_loss") is not None:
            post["val_loss"] = f"{p.metrics['val_loss']:.4f}"
        bar.set_postfix(post, refresh=True)
        if p.phase == "validate" and p.message:
            tqdm.write(p.message)

    def on_sigint(signum, frame) -> None:
        tqdm.write("stopping after this step (Ctrl-C again to kill)")
        stop.set()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, on_sigint) if nprocs == 1 else signal.getsignal(signal.SIGINT)
    ok = False
    try:
        if nprocs > 1:
            typer.echo(f"training with {nprocs} processes")
            result = train_events_distributed(cfg, nprocs, write=typer.echo)
        else:
            result = train_events(cfg, on_progress=on_progress, should_stop=stop, write=tqdm.write, dist_context=ctx)
        ok = True
    except (ValueError, ImportError, OSError, TrainingError) as e:
        _fail(str(e))
    finally:
        signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
        if ctx.enabled:
            cleanup(barrier=ok)
    if not ctx.is_main:
        return
    if result.cancelled:
        typer.echo(f"stopped after {result.epochs_completed} epoch(s); no bundle written")
        raise typer.Exit(code=130)
    v, t = result.val, result.test
    typer.echo(f"threshold {result.threshold:.2f}: val F{cfg.beta:g} {v['fbeta']:.3f} "
               f"(precision {v['precision']:.3f}, recall {v['recall']:.3f}, {v['events']} events)")  # fmt: skip
    if t is not None:
        typer.echo(f"test: precision {t['precision']:.3f}, recall {t['recall']:.3f}, F1 {t['f1']:.3f} "
                   f"(chance {t['chance_f1']:.3f}; {t['events']} events in {t['crops']} crops)")  # fmt: skip
    m = result.test_movies
    if m is not None and "f1" in m:
        typer.echo(f"whole test movies: precision {m['precision']:.3f}, recall {m['recall']:.3f}, F1 {m['f1']:.3f} "
                   f"({m['events']} events in {m['movies']} movies, {m['frames']} frames)")  # fmt: skip
    if m is not None and m["skipped"]:
        typer.echo(f"whole-movie test skipped {len(m['skipped'])} movie(s): {m['skipped'][0]['movie']}: "
                   f"{m['skipped'][0]['reason']}" + (" ..." if len(m["skipped"]) > 1 else ""))  # fmt: skip
    typer.echo(f"wrote {result.best_path} and {result.performance_path}")


@events_app.command("predict")
def events_predict(
    movie: Annotated[Path, typer.Argument(help="TIFF/OME-TIFF movie: T, [C,] Y, X.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Event bundle (best.pt from `events train`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for <name>_scores.tif and <name>_events.csv.")],
    threshold: Annotated[float | None, typer.Option(min=0, max=1, help="Event threshold (default: the bundle's, chosen on val).")] = None,
    tile: Annotated[int, typer.Option(min=16, help="Score frames in overlapping tiles of this size (px).")] = 256,
    overlap: Annotated[int, typer.Option(min=0, help="Tile overlap (px), blended smoothly.")] = 32,
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per network call.")] = 8,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA when available).")] = None,
) -> None:
    """Score every frame of a movie with an event model; write the score map and the events (napari points CSV)."""
    from napari_fibsem.core.events.predict import predict_file
    from napari_fibsem.core.models import ModelLoadError

    bar = _ImageBar()
    try:
        result, paths = predict_file(movie, model, out, threshold=threshold, tile=tile, overlap=overlap,
                                     batch_size=batch_size, device=device, on_progress=bar.update)  # fmt: skip
    except (ModelLoadError, ValueError, OSError, RuntimeError) as e:
        _fail(str(e))
    finally:
        bar.close()
    typer.echo(f"{len(result.events)} event(s) at threshold {result.threshold:.2f}; wrote {paths['events']} and {paths['scores']}")


@events_app.command("schedule")
def events_schedule(
    settings: Annotated[list[Path] | None, typer.Argument(help="Event settings YAMLs, run in this order (e.g. settings/*.yaml).")] = None,
    queue: Annotated[Path | None, typer.Option("--queue", help="Folder of the queue file (default: the first settings file's folder).")] = None,
    gpus: Annotated[int | None, typer.Option(min=0, help="Runs at once, one per GPU (default: every GPU torch sees; 0: CPU only).")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed items again too.")] = False,
) -> None:
    """A resumable queue of `events train` runs: re-running skips finished ones and restarts interrupted ones."""
    from napari_fibsem.core.events.schedule import ScheduleError, schedule

    try:
        items = schedule(settings or [], queue, gpus=gpus, retry_failed=retry_failed, write=typer.echo)
    except ScheduleError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    for item in items:
        typer.echo(f"{item.state.value:<8} {item.settings}" + (f" -> {item.output}" if item.output else ""))
    if any(i.state.value == "failed" for i in items):
        raise typer.Exit(code=1)


engine_app = typer.Typer(help="The data engine: detections and corrections logged during runs.", no_args_is_help=True)
app.add_typer(engine_app, name="engine")


@engine_app.command("summary")
def engine_summary(root: Annotated[Path, typer.Argument(help="Data-engine root (holds detections.csv).")]) -> None:
    """Correction rate per feature: how often a person had to move the model's point."""
    from napari_fibsem.core.automation.engine import DataEngine, format_summary

    if not (root / "detections.csv").is_file():
        _fail(f"{root}: no detections.csv here")
    for line in format_summary(DataEngine(root).summary()):
        typer.echo(line)


@engine_app.command("export")
def engine_export(
    root: Annotated[Path, typer.Argument(help="Data-engine root.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for train/ (labelling folder) and test keypoints.")],
) -> None:
    """Corrected images -> a labelling folder (model masks as starting labels); the rest -> test keypoints."""
    from napari_fibsem.core.automation.engine import DataEngine

    if not (root / "detections.csv").is_file():
        _fail(f"{root}: no detections.csv here")
    paths = DataEngine(root).export(out)
    typer.echo(f"training candidates: {paths['train']}; test keypoints: {paths['test_keypoints']} (images in {paths['test']})")


@app.command("closed-loop")
def closed_loop_cmd(
    model: Annotated[Path, typer.Option("--model", "-m", help="Segmentation checkpoint that finds the lamella.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the engine log, figures and report.md.")],
    world: Annotated[int, typer.Option(help="Simulated world (seed) to align in.")] = 0,
    wrong_by: Annotated[int, typer.Option(help="Pixels the supervised run's model is deliberately off by.")] = 40,
) -> None:
    """Align a lamella on the simulator with MODEL: unsupervised, then supervised with a wrong model
    that a scripted person corrects; writes the report and the data-engine log."""
    from napari_fibsem.core.automation.closed_loop import closed_loop

    try:
        runs, report = closed_loop(model, out, world_seed=world, wrong_by_px=wrong_by, write=typer.echo)
    except ValueError as e:  # ModelLoadError included
        _fail(str(e))
    typer.echo(f"report: {report}")
    if not all(r.converged for r in runs):
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the package version."""
    from napari_fibsem import __version__

    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
