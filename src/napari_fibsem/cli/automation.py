"""Detection and automation commands: ``detect``, ``evaluate``, ``closed-loop`` and the ``engine`` group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from napari_fibsem.cli._common import ImageBar, fail, has_display


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
        fail("give either --model or --masks")
    bar = ImageBar()
    try:
        for f in feature or []:
            get_feature(f)
        paths = collect_images(images)
        net = load_model(model, device=device) if model is not None else None
        summary = detect_images(paths, net, masks, feature or None, pixel_size, min_size, draw, bar.update)
    except (KeyError, ModelLoadError, ImportError, ValueError, OSError) as e:
        fail(str(e).strip("'\""))
    finally:
        bar.close()
    for path, reason in summary.failed:
        typer.secho(f"failed: {path}: {reason}", fg=typer.colors.RED, err=True)
    write_keypoints(out, summary.points)
    typer.echo(f"{summary}; wrote {out}")
    if summary.failed:
        raise typer.Exit(code=1)


def evaluate(
    config: Annotated[Path, typer.Option("--config", "-c", help="Evaluation YAML (data_path, images_path, save_path, checkpoints, thresholds ...).")],
) -> None:
    """Compare checkpoints on labelled keypoints: eval.csv, accuracy.csv, plots and a report."""
    from napari_fibsem.core.errors import ConfigError
    from napari_fibsem.core.evaluation.run import load_eval_config, run_evaluation
    from napari_fibsem.core.models import ModelLoadError

    bar = ImageBar()
    try:
        cfg = load_eval_config(config)
        result = run_evaluation(cfg, on_progress=bar.update)
    except (ConfigError, ModelLoadError, ImportError, ValueError, OSError) as e:
        fail(str(e))
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
    if not has_display():
        typer.echo(f"no display: not showing {len(paths)} picture(s); they are saved in {paths[0].parent}")
        return
    import matplotlib.pyplot as plt

    for p in paths:
        fig = plt.figure(p.name)
        fig.add_subplot().imshow(plt.imread(p))
        fig.axes[0].set_axis_off()
    plt.show()


def closed_loop(
    model: Annotated[Path, typer.Option("--model", "-m", help="Segmentation checkpoint that finds the lamella.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the engine log, figures and report.md.")],
    world: Annotated[int, typer.Option(help="Simulated world (seed) to align in.")] = 0,
    wrong_by: Annotated[int, typer.Option(help="Pixels the supervised run's model is deliberately off by.")] = 40,
) -> None:
    """Align a lamella on the simulator with MODEL: unsupervised, then supervised with a wrong model
    that a scripted person corrects; writes the report and the data-engine log."""
    from napari_fibsem.core.automation.closed_loop import closed_loop as run_closed_loop

    try:
        runs, report = run_closed_loop(model, out, world_seed=world, wrong_by_px=wrong_by, write=typer.echo)
    except ValueError as e:  # ModelLoadError included
        fail(str(e))
    typer.echo(f"report: {report}")
    if not all(r.converged for r in runs):
        raise typer.Exit(1)


engine_app = typer.Typer(help="The data engine: detections and corrections logged during runs.", no_args_is_help=True)


@engine_app.command("summary")
def engine_summary(root: Annotated[Path, typer.Argument(help="Data-engine root (holds detections.csv).")]) -> None:
    """Correction rate per feature: how often a person had to move the model's point."""
    from napari_fibsem.core.automation.engine import DataEngine, format_summary

    if not (root / "detections.csv").is_file():
        fail(f"{root}: no detections.csv here")
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
        fail(f"{root}: no detections.csv here")
    paths = DataEngine(root).export(out)
    typer.echo(f"training candidates: {paths['train']}; test keypoints: {paths['test_keypoints']} (images in {paths['test']})")
