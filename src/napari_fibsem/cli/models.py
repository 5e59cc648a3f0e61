"""Model commands: ``train``, ``export-onnx`` and ``predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from napari_fibsem.cli._common import INTERRUPTED_EXIT, ImageBar, fail
from napari_fibsem.cli._training import CtrlC, StepBar, check_nprocs, run_training


def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config YAML (OpenFIBSEM keys work; see examples/train_config.yaml).")],
    nprocs: Annotated[int, typer.Option("--nprocs", min=1, help="Local processes for data-parallel training (gloo on CPU, NCCL on GPUs). Under torchrun keep 1.")] = 1,
) -> None:
    """Train a segmentation model: best.pt / last.pt bundles, metrics.csv. Ctrl-C stops and saves last.pt for resuming."""
    from napari_fibsem.core.training import TrainingError, load_config
    from napari_fibsem.core.training.ddp import env_context
    from napari_fibsem.core.training.launch import train_distributed

    try:
        cfg = load_config(config)
    except ValueError as e:
        fail(str(e))
    ctx = env_context()
    check_nprocs(nprocs, ctx)
    ctrl_c = CtrlC("stopping after this step and saving last.pt (Ctrl-C again to kill)")
    result = run_training(nprocs, ctx, (ValueError, ImportError, TrainingError),
                          here=lambda: _train_here(cfg, ctx, ctrl_c),
                          spawned=lambda: train_distributed(cfg, nprocs, write=typer.echo))  # fmt: skip
    if not ctx.is_main:
        return
    if result.best_path is not None:
        typer.echo(f"best: {result.best_path} ({result.monitor} {result.best_value:.4f} at epoch {result.best_epoch})")
    if result.last_path is not None:
        typer.echo(f"last: {result.last_path} (epoch {result.epochs_completed}, step {result.global_step}/{result.total_steps})")
    if result.cancelled:
        typer.echo(f"stopped early: resume with checkpoint: {result.last_path}")
        if ctrl_c.pressed:
            raise typer.Exit(code=INTERRUPTED_EXIT)


def _train_here(cfg: Any, ctx: Any, ctrl_c: CtrlC) -> Any:
    """The trainer in this process under the step bar; Ctrl-C cancels it, which saves last.pt."""
    from napari_fibsem.core.training.loop import Trainer

    with StepBar(cfg.epochs, ("mean_fg_iou", "fg_iou", ".3f")) as bar:
        trainer = Trainer(cfg, on_progress=bar.update, write=bar.write, dist_context=ctx)
        ctrl_c.stop = trainer.cancel
        with ctrl_c:
            return trainer.run()


def export_onnx(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint bundle or OpenFIBSEM checkpoint dict (torch).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write (replaced atomically).")],
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 17,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare ONNX and torch on a test image.")] = True,
) -> None:
    """Export a torch checkpoint to ONNX: any image size, class map and normalisation stored inside."""
    import numpy as np

    from napari_fibsem.core.models import ModelLoadError, load_model
    from napari_fibsem.core.models.export import export_onnx as write_onnx

    try:
        model = load_model(checkpoint, device="cpu")
        if model.backend != "smp":
            fail(f"{checkpoint}: only torch (smp) checkpoints can be exported, not {model.backend!r} models")
        write_onnx(model, out, opset=opset)
        typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.num_classes} classes {model.class_map.names})")
        if check:
            image = np.random.default_rng(0).integers(0, 256, (3 * model.stride + 5, 4 * model.stride + 3), np.uint8)
            diff = np.abs(load_model(out).predict(image).probs - model.predict(image).probs).max()
            typer.echo(f"check: max |probability difference| ONNX vs torch = {diff:.2e}")
    except (ModelLoadError, ImportError, ValueError) as e:
        fail(str(e))


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
    bar = ImageBar()
    try:
        net = load_model(model, device=device, **options)
        summary = predict_folder(net, images, out, overwrite=overwrite, batch_size=batch_size, probs_dir=probs, on_progress=bar.update)
    except (ModelLoadError, ImportError, ValueError, OSError, RuntimeError) as e:
        fail(str(e))
    finally:
        bar.close()
    for path in summary.skipped:
        typer.echo(f"skipped (labels exist): {path}")
    for path, reason in summary.failed:
        typer.secho(f"failed: {reason}" if str(path) in reason else f"failed: {path}: {reason}", fg=typer.colors.RED, err=True)
    typer.echo(summary)
    if summary.failed:
        raise typer.Exit(code=1)
