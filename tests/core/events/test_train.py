"""Event model training: settings, losses, augmentation, peaks and matching, bundles, and a short
run on synthetic movies that must beat chance on the held-out test movies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from napari_fibsem.core.errors import ConfigError
from napari_fibsem.core.events.augment import augment_sample
from napari_fibsem.core.events.catalogue import Catalogue
from napari_fibsem.core.events.distributed import shard, train_events_rank
from napari_fibsem.core.events.evaluate import (
    MovieSource,
    choose_threshold,
    evaluate_maps,
    event_truth,
    score_movie,
    score_movies,
    whole_movie_sources,
)
from napari_fibsem.core.events.ingest import ingest
from napari_fibsem.core.events.losses import EventLoss, bce_loss, soft_focal_loss
from napari_fibsem.core.events.model import (
    NORMALISATION,
    EventModel,
    build_heatmap_unet,
    load_event_bundle,
    save_event_bundle,
    score_map,
    window_indices,
)
from napari_fibsem.core.events.peaks import Event, fbeta, find_events, match_events
from napari_fibsem.core.events.points import read_points
from napari_fibsem.core.events.predict import predict_movie
from napari_fibsem.core.events.settings import EventSettings, load_settings, parse_settings
from napari_fibsem.core.events.synthetic_movie import synthetic_movie
from napari_fibsem.core.events.train import _batches, _samples, train_events
from napari_fibsem.core.events.train_split import load_split
from napari_fibsem.core.events.training_sets import read_set, training_set
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models.base import ModelLoadError
from napari_fibsem.core.models.bundle import BundleMetadata, write_bundle
from napari_fibsem.core.training.data import TrainingSetupError
from napari_fibsem.core.training.ddp import DistContext, run_distributed, weights_digest

EXAMPLE = Path(__file__).parents[3] / "examples" / "event_settings.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine a second one mostly waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def event_set(tmp_path_factory) -> Path:
    """16 synthetic movies (3 splits, 1 blinking distractor each) -> 48 px crops -> a set split by movie."""
    root = tmp_path_factory.mktemp("events")
    raw = root / "raw" / "cos7"
    raw.mkdir(parents=True)
    for m in range(16):
        movie = synthetic_movie(m, frames=20, size=(96, 112), blobs=6, splits=3, blinks=1)
        tifffile.imwrite(raw / f"cell{m}.tif", movie.stack)
        rows = ["index,axis-0,axis-1,axis-2"] + [
            f"{i},{p.frame},{p.y},{p.x}" for i, p in enumerate(movie.points)
        ]
        (raw / f"cell{m}.csv").write_text("\n".join(rows) + "\n")
    ingest(root / "raw", root / "events", size=48, auto_negatives=1)
    catalogue = Catalogue(root / "events")
    catalogue.rebuild()
    return training_set(catalogue, {}, root / "sets", split=(0.5, 0.25, 0.25), seed=0)


def _settings(folder: Path, output: Path | None = None, **kw) -> EventSettings:
    base = {"training_set": folder, "output": output, "nb_filters": 8, "depth": 2, "batch_size": 16,
            "initial_learning_rate": 3e-3, "device": "cpu", "logger": ["csv"]}  # fmt: skip
    return EventSettings(**{**base, **kw})


# -- settings -------------------------------------------------------------------------------------
def test_settings_load_and_every_problem_is_one_error_naming_file_and_key(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "set.yaml").write_text("events: {train: [], val: [], test: []}\n")
    path = tmp_path / "settings.yaml"
    path.write_text(
        "training_set: set\noutput: runs/a\nn_frames: 5\nelastic: true\nbrightness_range: [0.5, 1.5]\n"
    )
    s = load_settings(path)
    assert s.training_set == folder and s.output == tmp_path / "runs" / "a"  # relative to the file
    assert (s.n_frames, s.nb_filters, s.first_conv_size, s.loss, s.beta) == (5, 16, 3, "soft_focal", 1.0)
    assert s.elastic_px > 0 and s.brightness_range == (0.5, 1.5)

    path.write_text(
        "training_set: set\nnb_filter: 8\nepochs: ten\nn_frames: 4\nloss: mse\nbrightness_range: [2, 1]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert "settings.yaml" in text and "5 problem(s) in the event settings" in text
    assert "nb_filter: unknown key; did you mean 'nb_filters'?" in text
    assert "epochs:" in text and "n_frames: n_frames must be odd" in text and "loss:" in text
    assert "brightness_range:" in text
    path.write_text("training_set: nowhere\n")
    with pytest.raises(ConfigError, match=r"settings.yaml.*\n.*training_set: .*nowhere does not exist"):
        load_settings(path)
    path.write_text("training_set: [set\n")
    with pytest.raises(ConfigError, match=r"(?s)settings.yaml.*not valid YAML"):
        load_settings(path)
    # the example file holds only valid keys
    example = yaml.safe_load(EXAMPLE.read_text())
    example["training_set"] = str(folder)
    assert parse_settings(example, source=EXAMPLE).n_frames == example["n_frames"]


# -- losses ---------------------------------------------------------------------------------------
def _peak_target() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    return torch.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 8.0)[None, None]


def test_soft_focal_loss_properties():
    y = _peak_target()
    right, wrong = (y - 0.5) * 16, (0.5 - y) * 16  # confident logits on the right / wrong side
    assert soft_focal_loss(right, y) < 0.1 * soft_focal_loss(wrong, y)
    # gamma down-weights what is already right: easy pixels count less as gamma grows
    assert (
        soft_focal_loss(right, y, gamma=4.0)
        < soft_focal_loss(right, y, gamma=2.0)
        < soft_focal_loss(right, y, gamma=0.0)
    )
    # alpha weighs the event term against the background term
    ones, zeros, logits = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.3)
    assert soft_focal_loss(logits, ones, alpha=0.9) / soft_focal_loss(
        logits, ones, alpha=0.1
    ) == pytest.approx(9.0)
    assert soft_focal_loss(logits, zeros, alpha=0.9) / soft_focal_loss(
        logits, zeros, alpha=0.1
    ) == pytest.approx(1 / 9)
    # gamma 0, alpha 0.5: half the binary cross-entropy
    assert soft_focal_loss(wrong, y, alpha=0.5, gamma=0.0) == pytest.approx(
        0.5 * float(bce_loss(wrong, y)), rel=1e-5
    )
    # extreme logits: finite values and gradients for every loss
    for name in ("soft_focal", "bce", "dice", "bce_dice"):
        z = torch.tensor([[[[1e4, -1e4], [-1e4, 1e4]]]], requires_grad=True)
        loss = EventLoss(name)(z, torch.tensor([[[[0.0, 1.0], [0.5, 1.0]]]]))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all(), name
    with pytest.raises(ValueError, match="unknown event loss"):
        EventLoss("mse")


# -- augmentation ---------------------------------------------------------------------------------
def test_augmentation_moves_every_frame_with_the_target(tmp_path):
    yy, xx = np.mgrid[0:40, 0:40]
    blob = np.exp(-((yy - 7) ** 2 + (xx - 12) ** 2) / 3.0).astype(np.float32)  # one event near a corner
    frames = np.stack([blob, 0.5 * blob, blob])
    s = _settings(tmp_path, elastic=3.0, brightness_range=(1.0, 1.0), gamma_range=(1.0, 1.0))
    seen = set()
    for seed in range(24):
        x, y = augment_sample(frames, blob, s, np.random.default_rng(seed))
        peak = np.unravel_index(y.argmax(), y.shape)
        seen.add(peak)
        for f in x:
            assert np.unravel_index(f.argmax(), f.shape) == peak
        assert np.allclose(x[1], 0.5 * x[0], atol=1e-6)  # the same warp on every frame
    assert len(seen) >= 6  # rotations and flips really moved it
    again = augment_sample(frames, blob, s, np.random.default_rng(3))
    assert all(
        np.array_equal(a, b) for a, b in zip(again, augment_sample(frames, blob, s, np.random.default_rng(3)))
    )
    # intensity: frames change, the target does not
    bright = _settings(tmp_path, brightness_range=(2.0, 2.0), gamma_range=(1.0, 1.0))
    x, y = augment_sample(frames, blob, bright, np.random.default_rng(0))
    assert x.max() == pytest.approx(2.0 * frames.max()) and y.max() == pytest.approx(blob.max())
    noisy = _settings(tmp_path, poisson=0.01, brightness_range=(1.0, 1.0), gamma_range=(1.0, 1.0))
    x, _ = augment_sample(np.full((3, 40, 40), 0.5, np.float32), blob, noisy, np.random.default_rng(0))
    assert abs(x.mean() - 0.5) < 0.02 and x.std() > 0.03
    # a non-square crop keeps its shape (quarter turns only where they fit)
    for seed in range(4):
        x, y = augment_sample(
            np.zeros((3, 20, 30), np.float32), np.zeros((20, 30), np.float32), s, np.random.default_rng(seed)
        )
        assert x.shape == (3, 20, 30) and y.shape == (20, 30)


# -- peaks and matching ---------------------------------------------------------------------------
def test_find_events_grows_from_seeds_with_hysteresis():
    m = np.zeros((5, 30, 30), np.float32)
    m[1, 5, 5] = 0.9  # a seed ...
    m[1, 5, 6:9] = 0.5  # ... growing along a row
    m[2, 5, 8] = 0.45  # ... and into the next frame
    m[1, 5, 10] = 0.85  # a second seed connected through the row: the same event
    m[1, 5, 9] = 0.42
    m[3, 20, 20:23] = 0.7  # above the low threshold, but no seed: ignored
    m[4, 25, 5] = 0.95  # another event, stronger
    events = find_events(m, threshold=0.8, hysteresis=0.5)
    assert [(e.frame, round(e.y), round(e.x)) for e in events] == [(4, 25, 5), (1, 5, 5)]
    assert events[0].score == pytest.approx(0.95) and events[1].size == 7
    # without hysteresis the two seeds stay apart
    strict = find_events(m, threshold=0.8, hysteresis=1.0, min_distance=0)
    assert sorted((e.frame, round(e.x)) for e in strict) == [(1, 5), (1, 10), (4, 5)]
    assert all(e.size == 1 for e in strict)
    # separate regions closer than min_distance in one frame are merged into the stronger
    close = np.zeros((1, 20, 20), np.float32)
    close[0, 10, 10], close[0, 10, 12] = 0.9, 0.8
    assert [(e.x, e.size) for e in find_events(close, 0.5, 1.0, min_distance=3)] == [(10.0, 2)]
    assert len(find_events(close, 0.5, 1.0, min_distance=2)) == 2
    # sub-pixel: two equal neighbours put the event between them
    pair = np.zeros((1, 9, 9), np.float32)
    pair[0, 4, 4] = pair[0, 4, 5] = 0.9
    (ev,) = find_events(pair, 0.5)
    assert (ev.y, ev.x) == (4.0, pytest.approx(4.5))
    assert find_events(np.zeros((2, 8, 8)), 0.5) == []
    with pytest.raises(ValueError, match="T, H, W"):
        find_events(np.zeros((8, 8)), 0.5)


def test_match_events_greedy_one_to_one_and_fbeta():
    pred = [Event(2, 11.0, 10.0, 0.6, 1), Event(2, 10.0, 10.0, 0.9, 1), Event(5, 30.0, 30.0, 0.7, 1)]
    truth = [(2, 10.5, 10.0), (6, 31.0, 30.0), (9, 0.0, 0.0)]
    tp, fp, fn, matches = match_events(pred, truth, distance=3, frames=1)
    assert (tp, fp, fn) == (2, 1, 1)
    assert sorted(matches) == [(1, 0), (2, 1)]  # the stronger prediction takes the contested point
    assert match_events(pred, truth, distance=3, frames=0)[:3] == (1, 2, 2)  # frame 5 vs 6 no longer matches
    assert match_events(pred, truth, distance=0.4, frames=1)[:3] == (0, 3, 3)
    assert match_events([], truth, 3, 1)[:3] == (0, 0, 3)
    assert fbeta(2, 1, 1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    p, r, f2 = fbeta(2, 2, 0, beta=2.0)
    assert (p, r) == (0.5, 1.0) and f2 == pytest.approx(5 * 0.5 / (4 * 0.5 + 1))
    assert fbeta(0, 0, 0) == (1.0, 1.0, 1.0) and fbeta(0, 3, 0)[2] == 0.0 and fbeta(0, 0, 4)[2] == 0.0


# -- model and bundles ----------------------------------------------------------------------------
def test_bundle_round_trip_and_clear_errors(tmp_path):
    s = _settings(tmp_path, n_frames=3, nb_filters=4, depth=3, first_conv_size=5)
    torch.manual_seed(0)
    net = build_heatmap_unet(s, channels=2)
    assert net(torch.zeros(2, 6, 37, 50)).shape == (2, 1, 37, 50)  # any size: padded and cropped back
    assert list(window_indices(0, 10, 5)) == [0, 0, 0, 1, 2] and list(window_indices(9, 10, 3)) == [8, 9, 9]
    path = save_event_bundle(tmp_path / "best.pt", net.eval(), s, 0.35, {"test_f1": 0.8})
    model = load_event_bundle(path)
    assert (model.n_frames, model.channels, model.threshold, model.hysteresis) == (3, 2, 0.35, 0.5)
    assert model.metadata["task"] == "events" and model.metadata["events"]["scores"] == {"test_f1": 0.8}
    assert not model.module.training
    movie = np.random.default_rng(0).integers(100, 900, (4, 2, 24, 20)).astype(np.uint16)
    expected = score_map(net, model.normalise(movie), 3)
    assert np.allclose(model.score_map(movie), expected, atol=1e-6) and expected.shape == (4, 24, 20)
    with pytest.raises(ValueError, match="2 channel"):
        model.normalise(movie[:, 0])
    # a segmentation bundle is refused, naming the file
    seg = write_bundle(
        tmp_path / "seg.pt", BundleMetadata(class_map=ClassMap.default()), {"w": torch.zeros(1)}
    )
    with pytest.raises(
        ModelLoadError, match=r"seg.pt: not an event model \(it holds a smp Unet segmentation"
    ):
        load_event_bundle(seg)
    # weights that do not fit the described network
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(ModelLoadError, match="broken.pt: the weights do not fit"):
        load_event_bundle(tmp_path / "broken.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match="junk.pt"):
        load_event_bundle(tmp_path / "junk.pt")
    # and the segmentation loader refuses an event bundle, naming the file and what to use instead
    from napari_fibsem.core.models import load_model

    with pytest.raises(ModelLoadError, match=r"best.pt: an event-detection model .*events predict"):
        load_model(path)


# -- training -------------------------------------------------------------------------------------
def test_short_training_run_beats_chance_on_the_test_movies(event_set, tmp_path):
    settings = _settings(event_set, tmp_path / "run", epochs=10, n_augmentations=1, seed=0)
    progress = []
    result = train_events(settings, on_progress=progress.append)
    assert not result.cancelled and result.best_path.is_file() and result.performance_path.is_file()
    perf = yaml.safe_load(result.performance_path.read_text())
    assert perf["threshold"] == result.threshold and perf["test"]["f1"] == result.test["f1"]
    assert len(perf["sweep"]) == 19 and perf["settings"]["epochs"] == 10
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 1 + 10
    assert [p.phase for p in progress][0] == "setup" and progress[-1].phase == "done"
    assert progress[-1].step == progress[-1].total and all(
        a.step <= b.step for a, b in zip(progress, progress[1:])
    )

    # baselines on the same test crops with the same matcher: events at random places (as many as
    # the model predicted), the untrained network and the raw intensity, both thresholded on val
    val, test = load_split(event_set, "val"), load_split(event_set, "test")
    truths = [c.truth for c in test]

    def f1_of(maps_val, maps_test) -> float:
        thr, _ = choose_threshold(maps_val, [c.truth for c in val], settings)
        return fbeta(*evaluate_maps(maps_test, truths, thr, settings)[:3])[2]

    torch.manual_seed(settings.seed)
    untrained = build_heatmap_unet(settings)
    untrained_f1 = f1_of(
        [score_map(untrained, c.images, 3) for c in val], [score_map(untrained, c.images, 3) for c in test]
    )
    intensity_f1 = f1_of(
        [np.clip(c.images[:, 0], 0, 1) for c in val], [np.clip(c.images[:, 0], 0, 1) for c in test]
    )
    f1, chance = result.test["f1"], result.test["chance_f1"]
    print(f"\nevent F1 on {result.test['events']} test events in {result.test['crops']} crops: trained {f1:.3f} "
          f"(P {result.test['precision']:.3f}, R {result.test['recall']:.3f}, threshold {result.threshold}); "
          f"random placement {chance:.3f}, untrained {untrained_f1:.3f}, raw intensity {intensity_f1:.3f}")  # fmt: skip
    assert result.test["events"] >= 8
    assert f1 >= 0.6
    assert f1 >= chance + 0.5
    assert f1 >= max(untrained_f1, intensity_f1) + 0.15  # seeds 0-3 of this setup: margins 0.21 to 0.37

    # the bundle reproduces the run's predictions and carries its threshold and scores
    model = load_event_bundle(result.best_path)
    assert model.threshold == result.threshold and model.metadata["events"]["scores"]["test_f1"] == f1
    maps = [score_map(model.module, c.images, model.n_frames) for c in test]
    assert fbeta(*evaluate_maps(maps, truths, model.threshold, settings)[:3])[2] == pytest.approx(f1)

    # whole test movies (every frame and pixel, all annotated events), labelled apart from the crops:
    # the run's counts are what predicting each source movie with the bundle and matching gives
    movies = perf["test_movies"]
    assert perf["test"]["scope"].startswith("event crops") and movies["scope"].startswith("whole test movies")
    assert movies["movies"] == len(read_set(event_set)["movies"]["test"]) == 4
    assert movies["skipped"] == [] and movies["notes"] == [] and movies["frames"] == 4 * 20
    assert result.test_movies["f1"] == movies["f1"] == model.metadata["events"]["scores"]["test_movie_f1"]
    for row in movies["per_movie"]:
        movie = Path(row["movie"])
        assert movie.parent == event_set.parents[1] / "raw" / "cos7"
        pred = predict_movie(tifffile.imread(movie), model, batch_size=settings.batch_size, device="cpu")
        truth = event_truth(read_points(movie.with_suffix(".csv")))
        counts = match_events(pred.events, truth, settings.match_distance, settings.match_frames)[:3]
        assert counts == (row["tp"], row["fp"], row["fn"]) and row["events"] == len(truth)
    print(f"whole test movies: F1 {movies['f1']:.3f} (P {movies['precision']:.3f}, R {movies['recall']:.3f}; "
          f"{movies['events']} events, {movies['frames']} frames) vs crops F1 {f1:.3f}")  # fmt: skip
    assert movies["f1"] >= 0.6


def test_whole_movie_scoring_skips_what_it_cannot_reach_with_a_note(event_set, tmp_path):
    train, val, test = (load_split(event_set, p) for p in ("train", "val", "test"))
    settings = _settings(event_set)
    sources, notes = whole_movie_sources(settings, train, val, test)
    assert len(sources) == 4 and notes == []
    for s in sources:  # found from event.yaml: the movie, its CSV, and an extent inside the movie
        assert s.movie.is_file() and s.points == s.movie.with_suffix(".csv")
        t, h, w = s.extent
        assert 0 < t <= 20 and 0 < h <= 96 and 0 < w <= 112
    torch.manual_seed(0)
    net = build_heatmap_unet(settings)
    # a movie that moved, one without a point CSV, and a train movie named explicitly
    lonely = tmp_path / "lonely.tif"
    tifffile.imwrite(lonely, np.zeros((6, 32, 32), np.uint16), metadata={"axes": "TYX"})
    named = [tmp_path / "moved.tif", lonely, train[0].source.movie]
    summary = score_movies(
        net, 0.5, _settings(event_set, test_movies=named), train, val, test, torch.device("cpu")
    )
    assert [r["movie"] for r in summary["skipped"]] == [str(named[0]), str(lonely)]
    assert (
        "not found" in summary["skipped"][0]["reason"] and "no point CSV" in summary["skipped"][1]["reason"]
    )
    assert summary["movies"] == 1 and summary["per_movie"][0]["movie"] == str(named[2])
    assert len(summary["notes"]) == 1 and "also a source of train/val events" in summary["notes"][0]
    # a movie smaller than the crops cut from it is not the same movie; nothing reachable: a note
    small = MovieSource(lonely, sources[0].points, (30, 96, 112))
    model = EventModel(net, 3, 1, 0.5, 0.5, NORMALISATION)
    assert "not the same movie" in score_movie(small, model, settings, torch.device("cpu"))["skipped"]
    nothing = score_movies(
        net, 0.5, _settings(event_set, test_movies=named[:2]), [], [], [], torch.device("cpu")
    )
    assert "f1" not in nothing and "skipped" in nothing["note"] and len(nothing["skipped"]) == 2
    assert score_movies(net, 0.5, _settings(event_set, whole_movie_test=False), [], [], test, "cpu") is None  # type: ignore[arg-type]


def test_two_gloo_processes_train_one_event_model(event_set, tmp_path, monkeypatch):
    """Data parallel on the CPU: each process trains on its half of every epoch with gradients
    averaged, both end with the same weights, only rank 0 writes, and the loss goes down."""
    out = tmp_path / "ddp"
    settings = _settings(event_set, out, epochs=3, seed=0)
    rank0, rank1 = run_distributed(train_events_rank, settings.to_jsonable(), 2)

    best = load_event_bundle(out / "best.pt")
    assert rank0.weights_sha1 == rank1.weights_sha1 == weights_digest(best.module.state_dict())
    assert rank0.best_path == out / "best.pt" and rank1.best_path is None and rank1.performance_path is None
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "metrics.csv", "performance.yaml"]
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3
    # the same numbers on both ranks: losses summed over them, crops and movies scored in shares
    untimed = [[{k: v for k, v in h.items() if k != "time_s"} for h in r.history] for r in (rank0, rank1)]
    assert untimed[0] == untimed[1] and rank1.threshold == rank0.threshold
    assert rank1.test == rank0.test and rank1.val == rank0.val and rank1.test_movies == rank0.test_movies
    train = load_split(event_set, "train")
    single_steps = len(_batches(_samples(train), train, settings.batch_size, 1, None))
    perf = yaml.safe_load((out / "performance.yaml").read_text())
    assert perf["training"]["processes"] == 2 and perf["training"]["replicas_agree"]
    assert perf["training"]["steps"] == 3 * -(-single_steps // 2)  # each process takes half the batches
    assert perf["test_movies"]["movies"] == 4 and perf["training"]["weights_sha1"] == rank0.weights_sha1
    first, last = rank0.history[0], rank0.history[-1]
    assert last["train_loss"] < 0.8 * first["train_loss"] and last["val_loss"] < first["val_loss"]
    # sharding: padded to equal counts for training, each batch once for validation
    two = [shard(list(range(5)), DistContext(r, 2, r)) for r in (0, 1)]
    assert two == [[0, 2, 4], [1, 3, 0]]
    assert [shard(range(5), DistContext(r, 2, r), pad=False) for r in (0, 1)] == [[0, 2, 4], [1, 3]]

    from typer.testing import CliRunner

    from napari_fibsem.cli import app

    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"training_set": str(event_set), "epochs": 1, "nb_filters": 4, "depth": 2,
                                    "logger": ["csv"], "test_movies": [str(tmp_path / "moved.tif")]}))  # fmt: skip
    args = ["events", "train", str(path), "--out", str(tmp_path / "cli"), "--device", "cpu", "--nprocs", "2"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "training with 2 processes" in run.output and "whole-movie test skipped 1 movie(s)" in run.output
    perf = yaml.safe_load((tmp_path / "cli" / "performance.yaml").read_text())
    assert perf["training"]["processes"] == 2 and "not found" in perf["test_movies"]["skipped"][0]["reason"]
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun
    clash = CliRunner().invoke(app, args[:3] + ["--nprocs", "2"])
    assert clash.exit_code != 0 and "under torchrun leave it at 1" in clash.output


def test_cancel_refuse_overwrite_and_cli(event_set, tmp_path):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    out = tmp_path / "cancelled"
    result = train_events(_settings(event_set, out, epochs=3), should_stop=stop)
    assert result.cancelled and result.best_path is None and not (out / "best.pt").exists()

    from typer.testing import CliRunner

    from napari_fibsem.cli import app

    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"training_set": str(event_set), "epochs": 1, "nb_filters": 4, "depth": 2,
                                        "logger": ["csv", "tensorboard"]}))  # fmt: skip
    run = CliRunner().invoke(
        app, ["events", "train", str(settings), "--out", str(tmp_path / "cli"), "--device", "cpu"]
    )
    assert run.exit_code == 0, run.output
    assert (
        "test: precision" in run.output
        and "chance" in run.output
        and "whole test movies: precision" in run.output
    )
    assert (tmp_path / "cli" / "best.pt").is_file() and any((tmp_path / "cli" / "tensorboard").iterdir())
    with pytest.raises(TrainingSetupError, match="already holds a run"):
        train_events(_settings(event_set, tmp_path / "cli", epochs=1))
    bad = CliRunner().invoke(app, ["events", "train", str(settings), "--device", "gpu"])
    assert bad.exit_code == 2 and "settings.yaml" in bad.output and "device" in bad.output
