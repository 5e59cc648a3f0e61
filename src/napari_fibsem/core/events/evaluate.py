"""Event-level evaluation: the threshold sweep on val crops, test scores on crops and on whole movies.

Crop-level test scores (``test`` in ``performance.yaml``) come from the test event crops, each
centred on its event with a few frames around it: lenient, since the network never has to stay
quiet over the rest of the movie (though a neighbouring event that falls inside a crop counts as
a false positive there: a crop's truth holds its own event only). Whole-movie scores (``test_movies``) run the chosen threshold
over every frame and pixel of the test movies with :func:`~.predict.predict_movie` and match the
events found against *all* annotated events of those movies, with the same matcher. The test
movies are the source movies of the test crops, as their ``event.yaml`` records them
(``metadata.source_folder`` + ``source``, and ``points_file``), or those the settings name; a
movie that moved, lost its point CSV or no longer fits its crops is skipped with a note.

In a data-parallel run each process scores its share of the crops and movies and the counts are
summed (:func:`~napari_fibsem.core.training.ddp.all_sum`), so every process ends with the numbers a
single process would get.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_fibsem.core.events.model import MIN_DISTANCE, NORMALISATION, EventModel, score_map
from napari_fibsem.core.events.peaks import Event, fbeta, find_events, match_events
from napari_fibsem.core.events.settings import EventSettings
from napari_fibsem.core.events.train_split import Crop, MovieSource, Truth, event_truth, source_of
from napari_fibsem.core.training.ddp import SINGLE, DistContext, all_sum, gather_objects

if TYPE_CHECKING:
    from napari_fibsem.core.events.model import HeatmapUNet

__all__ = [  # MovieSource, Truth, event_truth, source_of live in ``train_split``; found here too
    "CHANCE_DRAWS",
    "CROP_SCOPE",
    "MOVIE_SCOPE",
    "THRESHOLDS",
    "MovieSource",
    "Truth",
    "chance_f1",
    "choose_threshold",
    "crop_counts",
    "evaluate_maps",
    "event_truth",
    "score_crops",
    "score_movie",
    "score_movies",
    "source_of",
    "summarise_movies",
    "sweep_table",
    "whole_movie_sources",
]

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Thresholds tried on the val split (0.05 .. 0.95)."""
CHANCE_DRAWS = 20
CROP_SCOPE = "event crops centred on their annotated events (lenient: the rest of each movie is not scored)"
MOVIE_SCOPE = "whole test movies: every frame and pixel, against all annotated events of those movies"

# -- crops ----------------------------------------------------------------------------------------
def crop_counts(
    scores: np.ndarray, truth: Truth, settings: EventSettings, thresholds: Sequence[float] = THRESHOLDS
) -> np.ndarray:
    """``(len(thresholds), 4)`` int64 of one score map: tp, fp, fn and events found at each threshold."""
    out = np.zeros((len(thresholds), 4), np.int64)
    for k, thr in enumerate(thresholds):
        events = find_events(scores, thr, settings.hysteresis, MIN_DISTANCE)
        tp, fp, fn, _ = match_events(events, truth, settings.match_distance, settings.match_frames)
        out[k] = tp, fp, fn, len(events)
    return out


def sweep_table(counts: np.ndarray, settings: EventSettings) -> tuple[float, list[dict[str, Any]]]:
    """The threshold of :data:`THRESHOLDS` with the best F-beta (ties: the higher one) and the sweep."""
    sweep = []
    for thr, (tp, fp, fn, _) in zip(THRESHOLDS, np.asarray(counts).tolist()):
        p, r, f = fbeta(tp, fp, fn, settings.beta)
        sweep.append(
            {"threshold": thr, "precision": p, "recall": r, "fbeta": f, "tp": tp, "fp": fp, "fn": fn}
        )
    best = max(sweep, key=lambda row: (row["fbeta"], row["threshold"]))
    return float(best["threshold"]), sweep


def choose_threshold(
    maps: Sequence[np.ndarray], truths: Sequence[Truth], settings: EventSettings
) -> tuple[float, list[dict[str, Any]]]:
    """The threshold with the best F-beta over these score maps, and the sweep."""
    counts = np.zeros((len(THRESHOLDS), 4), np.int64)
    for m, truth in zip(maps, truths):
        counts += crop_counts(m, truth, settings)
    return sweep_table(counts, settings)


def evaluate_maps(
    maps: Sequence[np.ndarray], truths: Sequence[Truth], threshold: float, settings: EventSettings
) -> tuple[int, int, int, list[list[Event]]]:
    """Summed (tp, fp, fn) over crops at ``threshold``, and each crop's detected events."""
    tp = fp = fn = 0
    found = []
    for m, truth in zip(maps, truths):
        events = find_events(m, threshold, settings.hysteresis, MIN_DISTANCE)
        a, b, c, _ = match_events(events, truth, settings.match_distance, settings.match_frames)
        tp, fp, fn = tp + a, fp + b, fn + c
        found.append(events)
    return tp, fp, fn, found


def chance_f1(
    shapes: Sequence[tuple[int, ...]], truths: Sequence[Truth], counts: Sequence[int],
    settings: EventSettings, draws: int = CHANCE_DRAWS, seed: int = 0,
) -> float:  # fmt: skip
    """Mean F1 of a predictor placing the same number of events per crop at random frames and pixels."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        tp = fp = fn = 0
        for (t, h, w), truth, n in zip(shapes, truths, counts):
            guess = [Event(int(rng.integers(t)), float(rng.uniform(0, h)), float(rng.uniform(0, w)), float(rng.random()), 1)
                     for _ in range(n)]  # fmt: skip
            a, b, c, _ = match_events(guess, truth, settings.match_distance, settings.match_frames)
            tp, fp, fn = tp + a, fp + b, fn + c
        scores.append(fbeta(tp, fp, fn, 1.0)[2])
    return float(np.mean(scores)) if scores else 0.0


def _summed(counts: np.ndarray, ctx: DistContext, device: torch.device) -> np.ndarray:
    if not ctx.enabled:
        return counts
    return all_sum(torch.from_numpy(counts).to(device), ctx).cpu().numpy()


def score_crops(
    model: HeatmapUNet, val: Sequence[Crop], test: Sequence[Crop], settings: EventSettings,
    device: torch.device, ctx: DistContext = SINGLE,
) -> tuple[float, list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:  # fmt: skip
    """Choose the threshold on the val crops, score the test crops at it: ``(threshold, sweep, val, test)``.

    Each process scores every ``world_size``-th crop; the summed counts are the same everywhere.
    """
    counts = np.zeros((len(THRESHOLDS), 4), np.int64)
    for i in range(ctx.rank, len(val), ctx.world_size):
        counts += crop_counts(
            score_map(model, val[i].images, settings.n_frames, device), val[i].truth, settings
        )
    threshold, sweep = sweep_table(_summed(counts, ctx, device), settings)
    row = next(r for r in sweep if r["threshold"] == threshold)
    val_scores = {"fbeta": row["fbeta"], "precision": row["precision"], "recall": row["recall"],
                  "tp": row["tp"], "fp": row["fp"], "fn": row["fn"], "events": sum(len(c.truth) for c in val),
                  "crops": len(val)}  # fmt: skip
    if not test:
        return threshold, sweep, val_scores, None
    per_crop = np.zeros((len(test), 4), np.int64)
    for i in range(ctx.rank, len(test), ctx.world_size):
        m = score_map(model, test[i].images, settings.n_frames, device)
        per_crop[i] = crop_counts(m, test[i].truth, settings, (threshold,))[0]
    per_crop = _summed(per_crop, ctx, device)
    tp, fp, fn = (int(v) for v in per_crop[:, :3].sum(axis=0))
    p, r, f1 = fbeta(tp, fp, fn, 1.0)
    truths = [c.truth for c in test]
    chance = chance_f1(
        [c.target.shape for c in test], truths, per_crop[:, 3].tolist(), settings, seed=settings.seed
    )
    test_scores = {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
                   "events": sum(len(t) for t in truths), "crops": len(test), "chance_f1": chance}  # fmt: skip
    return threshold, sweep, val_scores, test_scores


# -- whole movies ---------------------------------------------------------------------------------
def whole_movie_sources(
    settings: EventSettings, train: Sequence[Crop], val: Sequence[Crop], test: Sequence[Crop]
) -> tuple[list[MovieSource], list[str]]:
    """The movies to score whole, and notes: ``settings.test_movies`` if given, else the test crops' sources."""
    notes: list[str] = []
    if settings.test_movies:
        seen = {_key(c.source.movie) for c in (*train, *val) if c.source is not None}
        for p in settings.test_movies:
            if _key(p) in seen:
                notes.append(f"{p} is also a source of train/val events: its scores are not independent")
        return [MovieSource(p) for p in settings.test_movies], notes
    by_movie: dict[Path, MovieSource] = {}
    for c in test:
        s = c.source
        if s is None:
            continue
        prev = by_movie.get(s.movie, s)
        extent = tuple(max(a, b) for a, b in zip(prev.extent, s.extent))
        by_movie[s.movie] = MovieSource(s.movie, prev.points or s.points, extent)  # type: ignore[arg-type]
    unknown = sum(c.source is None for c in test)
    if unknown:
        notes.append(
            f"{unknown} test crop(s) record no source movie in event.yaml (cut by an older version?)"
        )
    return [by_movie[k] for k in sorted(by_movie)], notes


def _key(p: Path) -> str:
    try:
        return str(p.resolve())
    except OSError:
        return str(p)


def score_movie(
    source: MovieSource, model: EventModel, settings: EventSettings, device: torch.device
) -> dict:
    """One movie's counts at the model's threshold, or ``{"movie", "skipped": reason}``."""
    from napari_fibsem.core.events.ingest import _csv_for, read_stack
    from napari_fibsem.core.events.points import check_inside, read_points
    from napari_fibsem.core.events.predict import predict_movie

    row: dict[str, Any] = {"movie": str(source.movie)}
    if not source.movie.is_file():
        return {**row, "skipped": "not found (moved or deleted since the crops were cut)"}
    points_path = (
        source.points if source.points is not None and source.points.is_file() else _csv_for(source.movie)
    )
    if points_path is None:
        return {**row, "skipped": "no point CSV beside it (e.g. cell1.csv for cell1.tif)"}
    try:
        stack, _ = read_stack(source.movie)
        shape = (stack.shape[0], stack.shape[-2], stack.shape[-1])
        if any(need > got for need, got in zip(source.extent, shape)):
            return {**row, "skipped": f"shape {tuple(stack.shape)} does not hold the crops cut from it "
                                      f"(at least {source.extent} frames x height x width): not the same movie"}  # fmt: skip
        points = read_points(points_path)
        check_inside(points, stack.shape, points_path)
        result = predict_movie(stack, model, batch_size=settings.batch_size, device=str(device))
    except (OSError, ValueError) as e:
        return {**row, "skipped": str(e)}
    truth = event_truth(points)
    tp, fp, fn, _ = match_events(result.events, truth, settings.match_distance, settings.match_frames)
    p, r, f1 = fbeta(tp, fp, fn, 1.0)
    return {**row, "frames": shape[0], "events": len(truth), "found": len(result.events), "tp": tp, "fp": fp,
            "fn": fn, "precision": p, "recall": r, "f1": f1}  # fmt: skip


def score_movies(
    module: HeatmapUNet, threshold: float, settings: EventSettings, train: Sequence[Crop], val: Sequence[Crop],
    test: Sequence[Crop], device: torch.device, ctx: DistContext = SINGLE,
) -> dict[str, Any] | None:  # fmt: skip
    """Whole-movie scores at ``threshold`` for ``performance.yaml`` (None when switched off or no test split).

    Each process scores every ``world_size``-th movie; the rows are gathered on every process.
    """
    if not settings.test_movies and not (settings.whole_movie_test and test):
        return None
    sources, notes = whole_movie_sources(settings, train, val, test)
    model = EventModel(module, settings.n_frames, module.in_channels // settings.n_frames, threshold,
                       settings.hysteresis, NORMALISATION)  # fmt: skip
    mine = {
        i: score_movie(sources[i], model, settings, device)
        for i in range(ctx.rank, len(sources), ctx.world_size)
    }
    rows = {i: row for part in gather_objects(mine, ctx) for i, row in part.items()}
    return summarise_movies([rows[i] for i in sorted(rows)], notes)


def summarise_movies(rows: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> dict[str, Any]:
    """Totals over the scored movies, the per-movie rows, and what was skipped and why."""
    scored = [r for r in rows if "skipped" not in r]
    out: dict[str, Any] = {"scope": MOVIE_SCOPE}
    if scored:
        tp, fp, fn = (sum(r[k] for r in scored) for k in ("tp", "fp", "fn"))
        p, r, f1 = fbeta(tp, fp, fn, 1.0)
        out.update({"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
                    "events": sum(m["events"] for m in scored), "movies": len(scored),
                    "frames": sum(m["frames"] for m in scored)})  # fmt: skip
    else:
        out["note"] = "no test movie could be scored: whole-movie scores skipped (see skipped)"
    out["per_movie"] = scored
    out["skipped"] = [{"movie": r["movie"], "reason": r["skipped"]} for r in rows if "skipped" in r]
    out["notes"] = list(notes)
    return out
