"""Commands that open napari: ``view`` and ``demo`` (which runs headless without a display)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from napari_fibsem.cli._common import fail, has_display, parse_size

_NO_NAPARI = "napari is not installed: pip install 'napari-fibsem[napari]'"


def view(
    paths: Annotated[list[Path], typer.Argument(help="TIFF files or dataset folders to open.")],
) -> None:
    """Open TIFFs or dataset folders in napari (needs a display and napari-fibsem[napari])."""
    try:
        import napari
    except ImportError:
        fail(_NO_NAPARI)
    viewer = napari.Viewer(title="napari-fibsem")
    for p in paths:
        viewer.open(str(p), plugin="napari-fibsem")
    napari.run()


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
        result = run_demo(out, n=n, size=parse_size(size), epochs=epochs, write=typer.echo, loop_scenes=loop_scenes,
                          loop_epochs=loop_epochs, event_movies=event_movies, event_epochs=event_epochs,
                          unseen=unseen)  # fmt: skip
    except (ValueError, TrainingError) as e:
        fail(str(e))
    typer.echo(f"demo outputs in {result.out.resolve()}")
    for what, path in (("labelled dataset", result.dataset), ("its model (for proposals)", result.model),
                       ("closed-loop report", result.loop_report), ("event model", result.event_model)):  # fmt: skip
        if path is not None and Path(path).exists():
            typer.echo(f"  {what}: {Path(path).resolve()}")
    if viewer and has_display():
        _open_demo_viewer(result)
    else:
        typer.echo("no display (or --no-viewer): in napari, Plugins > napari-fibsem > Getting started; "
                   f"or `napari-fibsem view {result.dataset}`")  # fmt: skip


def _open_demo_viewer(result: Any) -> None:
    """napari on the demo's dataset with its model ready for proposals; returns when napari closes."""
    try:
        import napari

        from napari_fibsem._demo_viewer import open_demo
    except ImportError:
        fail(_NO_NAPARI)
    open_demo(result.dataset, result.model)
    typer.echo("napari: Getting started shows the workflow; Label segmentation is open on the dataset "
               "with the model ready ('Propose for this image')")  # fmt: skip
    napari.run()
