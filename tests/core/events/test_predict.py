"""Event prediction over whole movies: windows, tiling and blending, events, CSV, cancel, files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from napari_fibsem.core.events.catalogue import Catalogue
from napari_fibsem.core.events.ingest import ingest, read_stack
from napari_fibsem.core.events.model import load_event_bundle
from napari_fibsem.core.events.peaks import match_events
from napari_fibsem.core.events.points import read_points
from napari_fibsem.core.events.predict import (
    EventPrediction,
    predict_file,
    predict_movie,
    read_events_csv,
)
from napari_fibsem.core.events.settings import EventSettings
from napari_fibsem.core.events.synthetic_movie import synthetic_movie
from napari_fibsem.core.events.train import train_events
from napari_fibsem.core.events.training_sets import training_set

MOVIE = {"frames": 16, "size": (80, 96), "blobs": 5, "splits": 3, "blinks": 1}
MATCH_PX, MATCH_FRAMES = 6.0, 2


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine a second one mostly waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class FakeEventModel:
    """Just the fields predict_movie uses (the real one comes from core/events/model.py)."""

    module: nn.Module
    n_frames: int = 3
    threshold: float = 0.5
    hysteresis: float = 0.5
    stride: int = 4
    metadata: dict[str, Any] = field(default_factory=dict)

    def normalise(self, stack: np.ndarray) -> np.ndarray:
        return np.asarray(stack, np.float32)


class PickChannel(nn.Module):
    """Output = one input channel: a model whose scores we know exactly."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.channel : self.channel + 1]


class TinyFCN(nn.Module):
    """A small fully convolutional net with stride 4 (pool, pool, upsample) and random weights."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.down = nn.Sequential(nn.Conv2d(cin, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # fmt: skip
        self.up = nn.Sequential(nn.Upsample(scale_factor=4, mode="bilinear"), nn.Conv2d(8, 1, 3, padding=1))
        self.skip = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x)) + self.skip(x)


def gaussian_scores(shape, peaks, sigma=2.0, height=0.95):
    t, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    s = np.full(shape, 0.01, np.float32)
    for f, y, x in peaks:
        s[f] = np.maximum(s[f], height * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)))
    return s


def logit(p):
    return np.log(p / (1 - p)).astype(np.float32)


def test_events_from_a_hand_made_score_map_through_tiles():
    """The 'movie' holds the logits of a known score map and the net passes the centre frame on:
    the scores must come back exactly, tiles and all, and the events sit on the peaks."""
    peaks = [(1, 20.0, 30.0), (3, 70.0, 150.0), (3, 10.0, 5.0), (5, 90.0, 100.5)]
    truth = gaussian_scores((6, 100, 170), peaks)
    model = FakeEventModel(PickChannel(1), n_frames=3, threshold=0.5)
    progress = []
    result = predict_movie(logit(truth), model, tile=64, overlap=16, batch_size=3,
                           on_progress=lambda d, t: progress.append((d, t)))  # fmt: skip
    np.testing.assert_allclose(result.scores, truth, atol=1e-5)
    assert result.scores.dtype == np.float32 and result.scores.shape == truth.shape
    assert progress[-1] == (6, 6) and all(b[0] > a[0] for a, b in zip(progress, progress[1:]))
    found = sorted((e.frame, e.y, e.x) for e in result.events)
    for (f, y, x), (ef, ey, ex) in zip(sorted(peaks), found, strict=True):
        assert ef == f and np.hypot(ey - y, ex - x) <= 0.5  # the half-pixel peak within half a pixel
    assert all(0.9 < e.score <= 0.95 for e in result.events)
    assert not result.cancelled and result.frames_done == 6
    # the threshold can be overridden: nothing reaches 0.99
    assert predict_movie(logit(truth), model, tile=64, threshold=0.99).events == []


def test_windows_use_neighbouring_frames_clamped_at_the_ends():
    truth = gaussian_scores((4, 32, 40), [(0, 10, 10), (2, 20, 30)])
    previous = predict_movie(logit(truth), FakeEventModel(PickChannel(0), n_frames=3))  # the frame before
    np.testing.assert_allclose(previous.scores[0], truth[0], atol=1e-5)  # clamped: frame 0 again
    np.testing.assert_allclose(previous.scores[1:], truth[:-1], atol=1e-5)
    # (T, C, H, W): inputs are frames x channels, frame-major; channel 1 of the centre frame is 1*2+1
    stack = np.stack([np.zeros_like(truth), logit(truth)], axis=1)
    multi = predict_movie(stack, FakeEventModel(PickChannel(3), n_frames=3))
    np.testing.assert_allclose(multi.scores, truth, atol=1e-5)


def test_tiled_blending_matches_the_untiled_pass():
    rng = np.random.default_rng(1)
    movie = rng.normal(size=(2, 110, 170)).astype(np.float32)  # not square, not stride-aligned
    model = FakeEventModel(TinyFCN(3), n_frames=3, stride=4)
    whole = predict_movie(movie, model, tile=1024)
    tiled = predict_movie(movie, model, tile=64, overlap=32, batch_size=5)
    assert whole.metadata["tile"] == 1024 and tiled.metadata["tile"] == 64
    diff = np.abs(tiled.scores - whole.scores)
    assert diff.max() < 2e-3 and diff.mean() < 1e-4, (diff.max(), diff.mean())
    small = predict_movie(movie[:, :40, :52], model, tile=64)  # smaller than a tile: one exact pass
    ref = predict_movie(movie[:, :40, :52], model, tile=4096)
    np.testing.assert_array_equal(small.scores, ref.scores)


def test_csv_round_trip(tmp_path):
    truth = gaussian_scores((5, 48, 64), [(1, 10.25, 20.5), (4, 30, 40)])
    result = predict_movie(logit(truth), FakeEventModel(PickChannel(1)))
    path = result.to_csv(tmp_path / "events.csv")
    assert path.read_text().splitlines()[0] == "index,axis-0,axis-1,axis-2,score"
    back = read_events_csv(path)
    assert [(e.frame, e.y, e.x) for e in back] == [
        (e.frame, round(e.y, 3), round(e.x, 3)) for e in result.events
    ]
    assert [e.score for e in back] == pytest.approx([e.score for e in result.events], abs=1e-5)
    # with or without the score column it is an annotation CSV that events extract reads
    for scored in (True, False):
        points = read_points(result.to_csv(tmp_path / f"points_{scored}.csv", score=scored))
        assert [(p.frame, p.y, p.x) for p in points] == [(e.frame, e.y, e.x) for e in back]


def test_stop_returns_the_finished_frames():
    truth = gaussian_scores((10, 32, 32), [(1, 10, 10), (8, 20, 20)])
    calls = []
    result = predict_movie(logit(truth), FakeEventModel(PickChannel(1)), batch_size=2,
                           on_progress=lambda d, t: calls.append(d), should_stop=lambda: len(calls) >= 2)  # fmt: skip
    assert result.cancelled and result.frames_done == 4 == calls[-1]
    np.testing.assert_allclose(result.scores[:4], truth[:4], atol=1e-5)
    assert not result.scores[4:].any()
    assert [(e.frame) for e in result.events] == [1]  # only from the finished frames


def test_bad_input_is_refused():
    model = FakeEventModel(PickChannel(0))
    with pytest.raises(ValueError, match="movie"):
        predict_movie(np.zeros((32, 32)), model)
    with pytest.raises(ValueError, match="odd"):
        predict_movie(np.zeros((3, 32, 32)), FakeEventModel(PickChannel(0), n_frames=2))


def test_to_csv_of_no_events(tmp_path):
    empty = EventPrediction(np.zeros((2, 8, 8), np.float32), [], 0.5, 0.5, 2)
    assert read_events_csv(empty.to_csv(tmp_path / "e.csv")) == []


# -- with a trained model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory) -> Path:
    """8 synthetic movies (seeds 0-7) -> 32 px event crops -> a short CPU training run -> best.pt."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("events_predict")
    raw = root / "raw" / "cells"
    raw.mkdir(parents=True)
    for seed in range(8):
        movie = synthetic_movie(seed, **MOVIE)
        tifffile.imwrite(raw / f"m{seed}.tif", movie.stack)
        rows = ["index,axis-0,axis-1,axis-2"] + [
            f"{i},{p.frame},{p.y},{p.x}" for i, p in enumerate(movie.points)
        ]
        (raw / f"m{seed}.csv").write_text("\n".join(rows) + "\n")
    ingest(root / "raw", root / "events", size=32, auto_negatives=2)
    catalogue = Catalogue(root / "events")
    catalogue.rebuild()
    folder = training_set(catalogue, {}, root / "sets", split=(0.6, 0.2, 0.2), seed=0)
    settings = EventSettings(training_set=folder, output=root / "run", n_frames=3, nb_filters=8, depth=2,
                             epochs=20, batch_size=16, initial_learning_rate=5e-3, device="cpu", logger=[],
                             match_distance=MATCH_PX, match_frames=MATCH_FRAMES)  # fmt: skip
    try:
        result = train_events(settings)
    finally:
        torch.set_num_threads(before)
    assert result.best_path is not None
    return result.best_path


def test_a_trained_model_finds_the_events_of_new_movies(trained_bundle):
    """Two movies the model never saw (seeds 100, 101; 3 split events each, a blinking distractor),
    scored in 64 px tiles: at least 4 of the 6 events found within 6 px and 2 frames, placed within
    2 px on average, and at most as many false events as true ones."""
    model = load_event_bundle(trained_bundle)
    tp = fp = fn = 0
    distances = []
    for seed in (100, 101):
        movie = synthetic_movie(seed, **MOVIE)
        result = predict_movie(movie.stack, model, tile=64, overlap=16, device="cpu")
        assert result.metadata["tile"] == 64  # 80 x 96 frames: really tiled
        t, f, n, matches = match_events(result.events, movie.events, MATCH_PX, MATCH_FRAMES)
        tp, fp, fn = tp + t, fp + f, fn + n
        distances += [float(np.hypot(result.events[i].y - movie.events[j][1], result.events[i].x - movie.events[j][2]))
                      for i, j in matches]  # fmt: skip
    print(f"new movies: tp {tp} fp {fp} fn {fn}; distances {np.round(distances, 2).tolist()}")
    assert tp >= 4 and fp <= tp
    assert np.mean(distances) <= 2.0


def test_predict_file_writes_scores_and_events(trained_bundle, tmp_path):
    movie = synthetic_movie(100, **MOVIE)
    tifffile.imwrite(tmp_path / "new.ome.tif", movie.stack, metadata={"axes": "TYX"})
    result, paths = predict_file(
        tmp_path / "new.ome.tif", trained_bundle, tmp_path / "out", tile=64, device="cpu"
    )
    assert paths == {
        "scores": tmp_path / "out" / "new_scores.tif",
        "events": tmp_path / "out" / "new_events.csv",
    }
    scores, _ = read_stack(paths["scores"])
    np.testing.assert_array_equal(scores, result.scores)
    assert [(e.frame, e.y, e.x) for e in read_events_csv(paths["events"])] == [
        (e.frame, round(e.y, 3), round(e.x, 3)) for e in result.events
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "new_events.csv",
        "new_scores.tif",
    ]  # no temp files

    # cancelled: nothing written
    result, paths = predict_file(
        tmp_path / "new.ome.tif", trained_bundle, tmp_path / "none", should_stop=lambda: True
    )
    assert result.cancelled and paths == {} and not (tmp_path / "none").exists()


def test_events_predict_command(trained_bundle, tmp_path):
    from typer.testing import CliRunner

    from napari_fibsem.cli import app

    tifffile.imwrite(tmp_path / "m.tif", synthetic_movie(101, **MOVIE).stack)
    args = ["events", "predict", str(tmp_path / "m.tif"), "--model", str(trained_bundle), "--out", str(tmp_path / "o"),
            "--tile", "64", "--device", "cpu", "--threshold", "0.3"]  # fmt: skip
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "at threshold 0.30" in run.output and (tmp_path / "o" / "m_events.csv").is_file()
    bad = CliRunner().invoke(app, ["events", "predict", str(tmp_path / "nope.tif"), "--model", str(trained_bundle),
                                   "--out", str(tmp_path / "o")])  # fmt: skip
    assert bad.exit_code == 2 and "nope.tif" in bad.output
