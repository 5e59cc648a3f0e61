"""The ``napari-fibsem`` command line: every job a widget starts can also run from here.

Commands import their core modules inside the function, so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    from napari_fibsem.core.synthetic import write_dataset

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
    from napari_fibsem.core.classes import ClassMap
    from napari_fibsem.core.dataset import discover, validate

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
    n: Annotated[int, typer.Option("--n", min=1, help="Number of synthetic scenes.")] = 12,
    size: Annotated[str, typer.Option(help="Image size HEIGHTxWIDTH.")] = "1024x1536",
    viewer: Annotated[bool, typer.Option("--viewer/--no-viewer", help="Open napari when a display exists.")] = True,
) -> None:
    """The end-to-end demo on synthetic data; opens napari on the result when a display exists."""
    from napari_fibsem.demo import run_demo

    try:
        result = run_demo(out, n=n, size=_parse_size(size))
    except ValueError as e:
        _fail(str(e))
    typer.echo(result.report())
    if viewer and _has_display():
        view([result.dataset])
    else:
        typer.echo("no display (or --no-viewer): outputs are listed above; open them with `napari-fibsem view`")


def _has_display() -> bool:
    import os
    import sys

    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@app.command()
def version() -> None:
    """Print the package version."""
    from napari_fibsem import __version__

    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
