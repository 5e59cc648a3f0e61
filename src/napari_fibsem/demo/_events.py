"""Demo part 3: the event pipeline on synthetic movies, as ``napari-fibsem events ...`` runs it.

synth -> extract -> index -> set -> train -> predict, with the settings of a small, quick run:
tiny movies and crops, many negative crops and a small heatmap U-Net: enough to find the split
events (the blinking blobs are distractors) far above chance in well under a minute on two CPU
cores (whole test movies: F1 0.90-1.00 over seeds 0-2, chance ~0.05).
"""

from __future__ import annotations

from typing import Any

MOVIES: dict[str, Any] = {"frames": 20, "size": (96, 128), "events": 3, "datasets": 2}
CROP = 32  # crop side (px)
NEGATIVES = 12  # negative crops per movie: many, so the model learns what is *not* an event
SPLIT = (0.6, 0.2, 0.2)  # train, val, test: whole movies (see _split for a few movies)
NETWORK: dict[str, Any] = {"n_frames": 3, "nb_filters": 8, "depth": 2, "batch_size": 16,
                           "initial_learning_rate": 5e-3}  # fmt: skip
MIN_MOVIES = 5  # train, val and test each take whole movies


def events_part(result, movies: int, epochs: int, seed: int, step, say) -> None:
    """Steps 10-15; ``epochs`` 0 stops after the training set."""
    from napari_fibsem.core.events.catalogue import open_catalogue
    from napari_fibsem.core.events.ingest import ingest
    from napari_fibsem.core.events.synthetic_dataset import write_event_movies
    from napari_fibsem.core.events.training_sets import read_set, training_set

    if movies < MIN_MOVIES:
        raise ValueError(f"the event part needs at least {MIN_MOVIES} movies (train, val and test take whole "
                         f"movies), got {movies}")  # fmt: skip
    root = result.out / "events"
    summary = write_event_movies(root / "movies", n=movies, seed=seed, **MOVIES)
    step(f"10. events synth: {summary}")
    extracted = ingest(root / "movies", root / "crops", size=CROP, auto_negatives=NEGATIVES, seed=seed)
    result.events_root = root / "crops"
    step(f"11. events extract: {extracted}, {CROP}x{CROP} px with Gaussian ground truth: {root / 'crops'}")
    catalogue = open_catalogue(root / "crops", None)
    indexed = catalogue.rebuild()
    step(f"12. events index: {indexed} event folder(s) in {catalogue.db_path}")
    folder = training_set(catalogue, {}, root / "sets", _split(movies), seed)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in read_set(folder)["events"].items())
    step(f"13. events set: {sizes} crops, split by movie: {folder}")
    if epochs > 0:
        _train_and_predict(result, folder, epochs, seed, step, say)


def _split(movies: int) -> tuple[float, float, float]:
    """:data:`SPLIT`, with val and test widened to 1.5 movies' share when movies are few: the set
    fills train, then val, then test by crop count a whole movie at a time, so a share under one
    movie's (whose crop count varies with its negatives) could leave val or test empty."""
    held_out = max(SPLIT[1], 1.5 / movies)
    return (1 - 2 * held_out, held_out, held_out)


def _train_and_predict(result, folder, epochs: int, seed: int, step, say) -> None:
    from napari_fibsem.core.events.evaluate import event_truth
    from napari_fibsem.core.events.peaks import match_events
    from napari_fibsem.core.events.points import read_points
    from napari_fibsem.core.events.predict import predict_file
    from napari_fibsem.core.events.settings import EventSettings
    from napari_fibsem.core.events.synthetic_dataset import write_event_movies
    from napari_fibsem.core.events.train import train_events

    root = result.out / "events"
    settings = EventSettings(training_set=folder, output=root / "run", epochs=epochs, seed=seed, device="auto",
                             logger=["console", "csv"], **NETWORK)  # fmt: skip
    trained = train_events(settings, write=lambda line: say(f"   {line}"))
    result.event_model, result.event_performance = trained.best_path, trained.performance_path
    step(f"14. events train: {trained.epochs_completed} epochs, threshold {trained.threshold:.2f} chosen on val; "
         f"{_scores(trained.test, trained.test_movies)}: {trained.performance_path}")  # fmt: skip
    step(f"    precision: share of the events found that are real; recall: share of the real events found "
         f"(within {settings.match_distance:g} px and {settings.match_frames} frame); F1 combines them (1 = every split "
         f"found and nothing else). Test crops sit on their events (lenient); whole test movies are scored at every "
         f"frame and pixel (strict). Chance: as many random guesses as the model made")  # fmt: skip

    new = write_event_movies(root / "new_movie", n=1, seed=seed + 1000, **{**MOVIES, "datasets": 1})
    movie = next((new.folder / "day1").glob("*.tif"))
    prediction, paths = predict_file(movie, trained.best_path, root / "predicted", tile=128)
    truth = event_truth(read_points(movie.with_name(movie.name.split(".")[0] + ".csv")))
    tp, fp, fn, _ = match_events(prediction.events, truth, settings.match_distance, settings.match_frames)
    step(f"15. events predict on a new movie: {len(prediction.events)} event(s) found, {tp} of its {len(truth)} "
         f"annotated splits among them ({fp} false); scores and events CSV (napari points) in "
         f"{paths['events'].parent}")  # fmt: skip


def _scores(test: dict | None, movies: dict | None) -> str:
    """performance.yaml's test figures in a line: crops, then whole movies."""
    if test is None:
        return "no test split"
    text = (f"test crops: precision {test['precision']:.2f}, recall {test['recall']:.2f}, F1 {test['f1']:.2f} "
            f"(chance {test['chance_f1']:.2f})")  # fmt: skip
    if movies is not None and "f1" in movies:
        text += (f"; whole test movies: precision {movies['precision']:.2f}, recall {movies['recall']:.2f}, "
                 f"F1 {movies['f1']:.2f} ({movies['events']} events in {movies['movies']} movies)")  # fmt: skip
    return text
