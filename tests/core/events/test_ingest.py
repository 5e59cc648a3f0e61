"""Event pipeline, first stage: points CSVs, Gaussian ground truth, event crops, negatives, ingest."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import yaml

from napari_fibsem.core.events.crops import cut, event_crops, group_points, negative_crops
from napari_fibsem.core.events.ground_truth import gaussian_maps
from napari_fibsem.core.events.ingest import EventsError, ingest, read_stack
from napari_fibsem.core.events.points import EventPoint, PointsError, read_points
from napari_fibsem.core.events.synthetic_movie import synthetic_movie


def _write_points(path, points, channel=False):
    if channel:
        lines = ["index,axis-0,axis-1,axis-2,axis-3"] + [f"{i},{p.frame},0,{p.y},{p.x}" for i, p in enumerate(points)]
    else:
        lines = ["index,axis-0,axis-1,axis-2"] + [f"{i},{p.frame},{p.y},{p.x}" for i, p in enumerate(points)]
    path.write_text("\n".join(lines) + "\n")


def test_points_csv_forms_and_errors(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("index,axis-0,axis-1,axis-2\n0,3.0,10.5,20\n1,4,11,21\n")
    assert read_points(f) == [EventPoint(3, 10.5, 20.0), EventPoint(4, 11.0, 21.0)]
    f.write_text("index,axis-0,axis-1,axis-2,axis-3\n0,3,1,10,20\n")
    assert read_points(f) == [EventPoint(3, 10.0, 20.0, 1)]
    f.write_text("frame,y,x\n2,5,6\n")
    assert read_points(f) == [EventPoint(2, 5.0, 6.0)]
    for text, message in (
        ("index,axis-0,axis-1,axis-2,size\n0,1,2,3,4\n", "unexpected column"),
        ("index,axis-0,axis-1\n0,1,2\n", "expected axis-0..axis-2"),
        ("index,axis-0,axis-1,axis-2\n0,1.5,2,3\n", "line 2: frame must be a whole number"),
        ("index,axis-0,axis-1,axis-2\n0,1,x,3\n", "line 2: not a number"),
        ("time,row,col\n1,2,3\n", "expected columns"),
    ):
        f.write_text(text)
        with pytest.raises(PointsError, match=message) as err:
            read_points(f)
        assert "a.csv" in str(err.value)


def test_gaussian_peaks_sit_at_the_points_with_the_requested_sigma():
    pts = [EventPoint(1, 20.0, 30.0), EventPoint(1, 22.0, 31.0), EventPoint(3, 5.0, 60.0)]
    g = gaussian_maps((5, 40, 64), pts, sigma=3.0)
    assert g.dtype == np.float32 and g.max() <= 1.0 and g.min() >= 0.0
    assert g[1, 20, 30] == pytest.approx(1.0) and g[3, 5, 60] == pytest.approx(1.0)
    assert not g[0].any() and not g[2].any()
    # combined by maximum: the point at (22, 31) is a peak of height 1, not 1 + a neighbour
    assert g[1, 22, 31] == pytest.approx(1.0)
    # sigma: one sigma away from an isolated peak the value is exp(-1/2)
    assert g[3, 5, 63] == pytest.approx(np.exp(-0.5), rel=1e-5)
    g4 = gaussian_maps((5, 2, 40, 64), [EventPoint(1, 20, 30, channel=1), EventPoint(2, 10, 10)], sigma=2.0)
    assert g4[1, 1, 20, 30] == pytest.approx(1.0) and not g4[1, 0].any()
    assert g4[2, 0, 10, 10] == pytest.approx(1.0) and g4[2, 1, 10, 10] == pytest.approx(1.0)


def test_crops_hold_their_events_with_context_frames_and_negatives_avoid_them():
    movie = synthetic_movie(3, frames=30, size=(120, 200), splits=3)
    crops = event_crops(movie.points, movie.stack.shape, size=48, frames_before=3, frames_after=2)
    assert len(crops) == len(movie.events) == 3  # two annotated frames per split join one event
    for crop, (t, y, x) in zip(sorted(crops, key=lambda c: c.event_frames), sorted(movie.events)):
        y0, x0, y1, x1 = crop.box
        assert (y1 - y0, x1 - x0) == (48, 48) and 0 <= y0 and y1 <= 120 and 0 <= x0 and x1 <= 200
        assert y0 <= y < y1 and x0 <= x < x1
        assert crop.event_frames == (t, min(t + 1, 29))
        assert crop.frames == (max(0, t - 3), min(29, t + 1 + 2))
        assert cut(movie.stack, crop).shape == (crop.frames[1] - crop.frames[0] + 1, 48, 48)
        for f, ly, lx in crop.local_points():
            assert 0 <= f < cut(movie.stack, crop).shape[0] and 0 <= ly < 48 and 0 <= lx < 48
    negatives = negative_crops(crops, movie.stack.shape, count=6, size=48, seed=1)
    assert negatives
    for n in negatives:
        for c in crops:
            same_time = n.frames[0] <= c.frames[1] and c.frames[0] <= n.frames[1]
            apart = n.box[2] <= c.box[0] or c.box[2] <= n.box[0] or n.box[3] <= c.box[1] or c.box[3] <= n.box[1]
            assert not same_time or apart
    # a crop larger than a narrow image is clamped to it
    narrow = event_crops([EventPoint(0, 10, 10)], (4, 30, 200), size=64)[0]
    assert narrow.box == (0, 0, 30, 64)
    # ids are stable
    assert [c.id("m.tif") for c in crops] == [c.id("m.tif") for c in event_crops(movie.points, movie.stack.shape, 48, 3, 2)]


def test_points_group_by_space_and_time():
    pts = [EventPoint(5, 10, 10), EventPoint(6, 12, 11), EventPoint(7, 13, 12), EventPoint(6, 80, 80), EventPoint(20, 10, 10)]
    groups = group_points(pts, link_distance=5, link_frames=1)
    assert [len(g) for g in groups] == [3, 1, 1]


def _brute_force_groups(pts, link_distance, link_frames):
    """Every pair checked (distance and frame gap both inclusive), flood fill, same ordering rule."""
    seen, groups = set(), []
    for start in range(len(pts)):
        if start in seen:
            continue
        seen.add(start)
        todo, members = [start], []
        while todo:
            a = todo.pop()
            members.append(a)
            for b in range(len(pts)):
                near = math.hypot(pts[a].y - pts[b].y, pts[a].x - pts[b].x) <= link_distance
                if b not in seen and near and abs(pts[a].frame - pts[b].frame) <= link_frames:
                    seen.add(b)
                    todo.append(b)
        groups.append([pts[i] for i in sorted(members)])
    return sorted(groups, key=lambda g: (min(p.frame for p in g), g[0].y, g[0].x))


@pytest.mark.parametrize("seed", range(40))
def test_point_groups_match_a_brute_force_grouping_ties_included(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 50))
    if seed % 2:  # integer grid: many pairs sit exactly at the radius (3-4-5 triangles, radius 5)
        pts = [EventPoint(int(rng.integers(0, 8)), float(rng.integers(0, 16)), float(rng.integers(0, 16))) for _ in range(n)]
        link_distance, link_frames = float(rng.choice([0, 1, 2**0.5, 5])), int(rng.integers(0, 3))
    else:
        pts = [EventPoint(int(rng.integers(0, 30)), float(rng.uniform(0, 100)), float(rng.uniform(0, 100))) for _ in range(n)]
        link_distance, link_frames = float(rng.uniform(0, 20)), int(rng.integers(0, 4))
    expected = _brute_force_groups(pts, link_distance, link_frames)
    assert group_points(pts, link_distance, link_frames) == expected


def test_points_exactly_at_the_limits_join():
    pts = [EventPoint(0, 0.0, 0.0), EventPoint(2, 3.0, 4.0), EventPoint(5, 3.0, 4.0)]
    assert [len(g) for g in group_points(pts, link_distance=5, link_frames=2)] == [2, 1]
    assert [len(g) for g in group_points(pts, link_distance=4.999, link_frames=3)] == [1, 2]


def _dataset(root, seed=0, channel=False, manual=None):
    movie = synthetic_movie(seed, frames=16, size=(96, 128), splits=2)
    root.mkdir(parents=True, exist_ok=True)
    stack = np.stack([movie.stack, movie.stack // 2], axis=1) if channel else movie.stack
    tifffile.imwrite(
        root / "cell1.ome.tif",
        stack,
        ome=True,
        metadata={"axes": "TCYX" if channel else "TYX", "PhysicalSizeX": 0.04, "PhysicalSizeXUnit": "µm",
                  "TimeIncrement": 0.5, "TimeIncrementUnit": "s"},  # fmt: skip
    )
    _write_points(root / "cell1.csv", movie.points, channel=channel)
    if manual is not None:
        (root / "db_manual.yaml").write_text(yaml.safe_dump(manual))
    return movie


def test_ingest_writes_event_folders_with_merged_metadata(tmp_path):
    parent = tmp_path / "raw"
    parent.mkdir()
    (parent / "db_manual.yaml").write_text(yaml.safe_dump({"microscope": "isim", "cell_line": "cos7"}))
    movie = _dataset(parent / "day1", manual={"cell_line": "hela", "date": "2026-03-01"})
    _dataset(parent / "day2", seed=1, channel=True)
    summary = ingest(parent, tmp_path / "events", size=32, auto_negatives=2, sigma=1.5)
    assert summary.datasets == 2 and summary.events == 4 and summary.negatives >= 2
    meta = yaml.safe_load((tmp_path / "events" / "day1" / "dataset.yaml").read_text())
    assert meta["cell_line"] == "hela" and meta["microscope"] == "isim"  # innermost wins, outer kept
    assert meta["pixel_size_um"] == pytest.approx(0.04) and meta["fps"] == pytest.approx(2.0)
    events = [f for f in summary.folders if yaml.safe_load((f / "event.yaml").read_text())["label"] == "event"]
    for folder in events:
        record = yaml.safe_load((folder / "event.yaml").read_text())
        images, gt = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "ground_truth.tif")
        assert images.shape[-2:] == gt.shape[-2:] == (32, 32) and images.shape[0] == gt.shape[0]
        for f, y, x in record["points"]:
            assert gt[(int(f), ..., round(y), round(x))].max() > 0.8
    day1 = [f for f in events if f.parent.name == "day1"]
    first = yaml.safe_load((day1[0] / "event.yaml").read_text())
    assert first["source"] == "day1/cell1.ome.tif" and first["metadata"]["date"] == "2026-03-01"
    assert any(np.allclose((first["box"]["y0"] + p[1], first["box"]["x0"] + p[2]), (e[1], e[2]), atol=1)
               for p in first["points"] for e in movie.events)  # fmt: skip
    again = ingest(parent, tmp_path / "events", size=32, auto_negatives=2, sigma=1.5)
    assert sorted(f.name for f in again.folders) == sorted(f.name for f in summary.folders)


def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path):
    parent = tmp_path / "raw"
    _dataset(parent / "ok")
    bad = parent / "bad"
    _dataset(bad)
    (bad / "cell1.csv").write_text("index,axis-0,axis-1,axis-2\n0,3,500,20\n")  # y outside the 96 px image
    with pytest.raises(PointsError, match=r"cell1.csv: point .* outside the stack"):
        ingest(parent, tmp_path / "events")
    assert not (tmp_path / "events").exists()
    (bad / "cell1.csv").unlink()
    (parent / "ok" / "db_manual.yaml").write_text("cell_line: cos7\nmicroscop: isim\n")
    with pytest.raises(EventsError, match=r"db_manual.yaml: invalid metadata: microscop"):
        ingest(parent, tmp_path / "events")
    (parent / "ok" / "db_manual.yaml").unlink()
    tifffile.imwrite(parent / "ok" / "still.tif", np.zeros((32, 32), np.uint16))
    (parent / "ok" / "still.csv").write_text("index,axis-0,axis-1,axis-2\n0,0,1,1\n")
    with pytest.raises(EventsError, match="still.tif: no time axis"):
        read_stack(parent / "ok" / "still.tif")
    with pytest.raises(EventsError, match="still.tif: no time axis"):
        ingest(parent, tmp_path / "events")
    assert not (tmp_path / "events").exists()
