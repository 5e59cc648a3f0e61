"""The ``events`` group: annotated movies -> event crops -> catalogue -> training sets -> a model -> scores.

Training goes through :mod:`napari_fibsem.cli._training`, shared with ``train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from napari_fibsem.cli._common import INTERRUPTED_EXIT, ImageBar, fail, parse_size
from napari_fibsem.cli._training import CtrlC, StepBar, check_nprocs, run_training

events_app = typer.Typer(help="Event pipeline: annotated movies -> event crops (-> catalogue, training, prediction).",
                          no_args_is_help=True)  # fmt: skip
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
        summary = write_event_movies(out, n=n, seed=seed, frames=frames, size=parse_size(size), events=events,
                                     datasets=datasets)  # fmt: skip
    except (FileExistsError, ValueError) as e:
        fail(str(e))
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
        fail(str(e))
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
        fail(str(e))
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

    try:
        query = _parse_where(where or [])
        fractions = tuple(float(v) for v in split.split(","))
        folder = training_set(open_catalogue(root, uri), query, out, fractions, seed)  # type: ignore[arg-type]
    except (ValueError, ImportError, OSError) as e:
        fail(str(e))
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
    from napari_fibsem.core.events.distributed import train_events_distributed
    from napari_fibsem.core.events.train import train_events
    from napari_fibsem.core.training.ddp import env_context
    from napari_fibsem.core.training.progress import StopFlag, TrainingError

    cfg = _event_settings(settings, out, device)
    ctx = env_context()
    check_nprocs(nprocs, ctx)
    stop = StopFlag()

    def here() -> Any:
        with (
            StepBar(cfg.epochs, ("val_loss", "val_loss", ".4f"), show_messages=True) as bar,
            CtrlC("stopping after this step (Ctrl-C again to kill)", stop.set),
        ):
            return train_events(cfg, on_progress=bar.update, should_stop=stop, write=bar.write, dist_context=ctx)

    result = run_training(nprocs, ctx, (ValueError, ImportError, OSError, TrainingError), here=here,
                          spawned=lambda: train_events_distributed(cfg, nprocs, write=typer.echo))  # fmt: skip
    if not ctx.is_main:
        return
    if result.cancelled:
        typer.echo(f"stopped after {result.epochs_completed} epoch(s); no bundle written")
        raise typer.Exit(code=INTERRUPTED_EXIT)
    _echo_scores(result, cfg.beta)


def _event_settings(settings: Path, out: Path | None, device: str | None) -> Any:
    """The settings file with ``--out`` / ``--device`` laid over it, validated again as a whole."""
    from napari_fibsem.core.events.settings import load_settings, parse_settings

    try:
        cfg = load_settings(settings)
        if out is not None or device is not None:
            data = {**cfg.model_dump(), **({"output": out} if out is not None else {}),
                    **({"device": device} if device is not None else {})}  # fmt: skip
            cfg = parse_settings(data, source=f"{settings} (with the command-line options)")
    except ValueError as e:
        fail(str(e))
    return cfg


def _echo_scores(result: Any, beta: float) -> None:
    """The trained model's scores: val at the chosen threshold, test crops, whole test movies."""
    v, t = result.val, result.test
    typer.echo(f"threshold {result.threshold:.2f}: val F{beta:g} {v['fbeta']:.3f} "
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

    bar = ImageBar()
    try:
        result, paths = predict_file(movie, model, out, threshold=threshold, tile=tile, overlap=overlap,
                                     batch_size=batch_size, device=device, on_progress=bar.update)  # fmt: skip
    except (ModelLoadError, ValueError, OSError, RuntimeError) as e:
        fail(str(e))
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
        fail(str(e))
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    for item in items:
        typer.echo(f"{item.state.value:<8} {item.settings}" + (f" -> {item.output}" if item.output else ""))
    if any(i.state.value == "failed" for i in items):
        raise typer.Exit(code=1)


def _parse_where(items: list[str]) -> dict:
    """``--where`` items -> a catalogue query: ``k=a,b`` any of, ``k>=v`` / ``k<=v`` range bounds."""
    query: dict = {}
    for item in items:
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
    return query
