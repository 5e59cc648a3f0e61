"""Synthetic event datasets on disk: the layout, metadata and annotations `events extract` reads."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import yaml

from napari_fibsem.core.events.ingest import ingest, manual_metadata, read_stack
from napari_fibsem.core.events.points import read_points
from napari_fibsem.core.events.synthetic_dataset import write_event_movies
from napari_fibsem.core.events.synthetic_movie import synthetic_movie

SMALL = {"n": 5, "seed": 3, "frames": 12, "size": (64, 80), "events": 2, "datasets": 2}


def test_layout_metadata_and_annotations(tmp_path):
    summary = write_event_movies(tmp_path / "raw", **SMALL)
    assert (summary.movies, summary.datasets, summary.events) == (5, 2, 10)
    assert "5 synthetic movies (12 frames of 64x80) in 2 dataset(s) with 10 annotated split events" in str(
        summary
    )
    day1, day2 = tmp_path / "raw" / "day1", tmp_path / "raw" / "day2"
    assert sorted(p.name for p in day1.glob("*.tif")) == [
        "cell_000.ome.tif",
        "cell_002.ome.tif",
        "cell_004.ome.tif",
    ]
    assert sorted(p.name for p in day2.glob("*.csv")) == ["cell_001.csv", "cell_003.csv"]
    # the movie and its points are the generator's, for the seed the summary's seed derives
    movie_seed = int(np.random.SeedSequence(3).generate_state(5)[1])
    movie = synthetic_movie(movie_seed, frames=12, size=(64, 80), blobs=8, splits=2, blinks=2)
    stack, ome = read_stack(day2 / "cell_001.ome.tif")
    np.testing.assert_array_equal(stack, movie.stack)
    assert ome["pixel_size_um"] == pytest.approx(0.04) and ome["fps"] == pytest.approx(2.0)
    points = read_points(day2 / "cell_001.csv")
    assert [p.frame for p in points] == [p.frame for p in movie.points]
    assert np.allclose([(p.y, p.x) for p in points], [(p.y, p.x) for p in movie.points], atol=1e-3)
    # metadata: shared keys at the top, each dataset's own date below (innermost wins)
    meta1, meta2 = manual_metadata(day1, tmp_path / "raw"), manual_metadata(day2, tmp_path / "raw")
    assert meta1["cell_line"] == meta2["cell_line"] == "synthetic" and meta1["event_type"] == "division"
    assert meta1["date"] == "2026-01-05" and meta2["date"] == "2026-01-06"
    # seeded: the same arguments give the same movies
    write_event_movies(tmp_path / "again", **SMALL)
    assert tifffile.imread(tmp_path / "again" / "day2" / "cell_001.ome.tif").tobytes() == stack.tobytes()
    assert (tmp_path / "again" / "day1" / "cell_000.csv").read_text() == (day1 / "cell_000.csv").read_text()


def test_extract_reads_every_annotated_event(tmp_path):
    summary = write_event_movies(
        tmp_path / "raw", n=4, seed=1, frames=16, size=(96, 128), events=3, datasets=1
    )
    found = ingest(tmp_path / "raw", tmp_path / "events", size=32, auto_negatives=1)
    # a split is annotated on two frames; extract joins them into one event (two splits of a movie
    # may join too when they happen at the same place and time, so at most one per split)
    assert (
        found.movies == 4 and found.datasets == 1 and 0.8 * summary.events <= found.events <= summary.events
    )
    record = yaml.safe_load(next((tmp_path / "events" / "day1").glob("*/event.yaml")).read_text())
    assert record["metadata"]["microscope"] == "simulated" and record["metadata"]["fps"] == pytest.approx(2.0)


def test_refuses_a_folder_in_use_and_bad_sizes_leaving_nothing(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        write_event_movies(tmp_path / "mine", n=1)
    with pytest.raises(ValueError, match="frames=4"):
        write_event_movies(tmp_path / "new", n=1, frames=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no partial folders left behind
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
