"""The command line, run as a user runs it (a subprocess on the installed entry point)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_fibsem.core.io.imageio import write_labels

EXE = shutil.which("napari-fibsem") or str(Path(sys.executable).parent / "napari-fibsem")


def run(*args, ok=True):
    out = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)
    assert (out.returncode == 0) == ok, out.stdout + out.stderr
    return out


def test_every_command_has_help():
    main = run("--help").stdout
    commands = ["synth", "check", "view", "demo", "version", "import-dataset", "predict", "objects", "detect", "evaluate",
                "closed-loop"]  # fmt: skip
    for c in commands:
        assert c in main
        assert "Usage" in run(c, "--help").stdout


def test_synth_then_check(tmp_path):
    out = run("synth", "--out", str(tmp_path / "ds"), "--n", "3", "--size", "64x96", "--seed", "1")
    assert "wrote 3 synthetic 64x96 scenes" in out.stdout
    assert "3 images, 3 labelled, 0 unlabelled" in run("check", str(tmp_path / "ds")).stdout
    bad = run("synth", "--out", str(tmp_path / "ds"), "--n", "1", ok=False)
    assert "exists and is not empty" in bad.stderr
    assert "HEIGHTxWIDTH" in run("synth", "--out", str(tmp_path / "x"), "--size", "big", ok=False).stderr


def test_check_reports_bad_labels(tmp_path):
    run("synth", "--out", str(tmp_path / "ds"), "--n", "2", "--size", "64x64")
    write_labels(tmp_path / "ds" / "labels" / "synthetic_0001.tif", np.full((64, 64), 12, np.uint8))
    out = run("check", str(tmp_path / "ds"), ok=False)
    assert "synthetic_0001.tif: label values [12]" in out.stderr


def test_demo_headless(tmp_path):
    out = run("demo", "--out", str(tmp_path / "demo"), "--n", "5", "--size", "64x96", "--epochs", "2", "--unseen", "2",
              "--loop-scenes", "8", "--loop-epochs", "1", "--event-movies", "5", "--event-epochs", "1",
              "--no-viewer")  # fmt: skip
    assert "demo outputs in" in out.stdout and "labels valid" in out.stdout
    assert len(list((tmp_path / "demo" / "dataset").glob("*.tif"))) == 5
    # trained, then predicted and scored scenes it never saw
    assert (tmp_path / "demo" / "run" / "last.pt").is_file() and "3. trained U-Net resnet18 for 2 epochs" in out.stdout
    unseen = sorted(p.name for p in (tmp_path / "demo" / "unseen").glob("*.tif"))
    assert len(unseen) == 2 and sorted(p.name for p in (tmp_path / "demo" / "unseen_predicted").glob("*.tif")) == unseen
    assert "4. predicted 2 unseen scenes" in out.stdout and "wrote 2 label file(s)" in out.stdout
    assert "mean foreground IoU" in out.stdout
    # the closed loop runs to its report even with a barely trained model (1 epoch, 8 images)
    loop = tmp_path / "demo" / "closed_loop"
    assert "6. closed loop: 8 simulator images" in out.stdout and "8b. supervised: lamella" in out.stdout
    assert (loop / "report.md").is_file() and (loop / "engine" / "detections.csv").is_file()
    # the event pipeline, synth to predict, with the test scores of performance.yaml
    events = tmp_path / "demo" / "events"
    assert "10. events synth: wrote 5 synthetic movies" in out.stdout and "13. events set: train" in out.stdout
    assert "14. events train: 1 epochs" in out.stdout and "F1" in out.stdout and "chance" in out.stdout
    assert (events / "run" / "best.pt").is_file() and (events / "run" / "performance.yaml").is_file()
    assert "15. events predict on a new movie" in out.stdout and len(list((events / "predicted").glob("*_events.csv"))) == 1
    # each part timed, and the whole
    for part in ("[part 1, segmentation: ", "[part 2, closed loop: ", "[part 3, events: ", "[demo total: "):
        assert part in out.stdout
    run("demo", "--out", str(tmp_path / "demo"), "--n", "1", "--size", "64x96", "--epochs", "0", "--loop-epochs", "0",
        "--event-movies", "5", "--event-epochs", "0", "--no-viewer")  # re-run replaces  # fmt: skip
    assert not (tmp_path / "demo" / "run").exists() and not loop.exists() and not (events / "run").exists()
    assert len(list((tmp_path / "demo" / "dataset").glob("*.tif"))) == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    assert "not a previous demo output" in run("demo", "--out", str(tmp_path / "mine"), "--no-viewer", ok=False).stderr
    assert (tmp_path / "mine" / "thesis.tex").exists()


@pytest.mark.parametrize("example", ["synthetic_dataset.py", "synthetic_dataset.sh"])
def test_examples_run(tmp_path, example):
    path = Path(__file__).parents[1] / "examples" / example
    env = {**os.environ, "PATH": str(Path(EXE).parent) + os.pathsep + os.environ.get("PATH", "")}
    if example.endswith(".py"):
        cmd = [sys.executable, str(path), "--out", str(tmp_path / "ex"), "--n", "4", "--size", "64x96"]
    else:
        cmd = ["bash", str(path), str(tmp_path / "ex"), "3", "64x96"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wrote" in out.stdout and len(list((tmp_path / "ex").glob("*.tif"))) in (3, 4)


def test_detect_from_masks_then_evaluate(tmp_path):
    run("synth", "--out", str(tmp_path / "ds"), "--n", "2", "--size", "96x128", "--seed", "3")
    out = run("detect", str(tmp_path / "ds"), "--masks", str(tmp_path / "ds" / "labels"),
              "--out", str(tmp_path / "det.csv"), "--draw", str(tmp_path / "pics"))  # fmt: skip
    assert "in 2 image(s)" in out.stdout and (tmp_path / "pics" / "synthetic_0000.png").exists()
    from napari_fibsem.core.io.keypoints import read_keypoints

    truth = {(p.filename, p.feature): (p.x, p.y) for p in read_keypoints(tmp_path / "ds" / "keypoints.csv")}
    found = {(p.filename, p.feature): (p.x, p.y) for p in read_keypoints(tmp_path / "det.csv")}
    assert set(truth) <= set(found)
    assert all(abs(found[k][0] - v[0]) <= 2 and abs(found[k][1] - v[1]) <= 2 for k, v in truth.items())
    (tmp_path / "eval.yaml").write_text(
        "data_path: ds/keypoints.csv\nimages_path: ds\nsave_path: out\ncheckpoints: [ds/labels]\n"
        "thresholds: [5]\n"
    )
    out = run("evaluate", "--config", str(tmp_path / "eval.yaml"))
    assert "100.0%" in out.stdout and (tmp_path / "out" / "report.html").exists()
    bad = run("evaluate", "--config", str(tmp_path / "missing.yaml"), ok=False)
    assert "missing.yaml" in bad.stderr and "cannot read" in bad.stderr
    bad = run("detect", str(tmp_path / "ds"), ok=False)
    assert "either --model or --masks" in bad.stderr


def test_events_extract(tmp_path):
    import tifffile

    from napari_fibsem.core.events.synthetic_movie import synthetic_movie

    movie = synthetic_movie(2, frames=40, size=(96, 128), splits=2)
    (tmp_path / "raw" / "d1").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "raw" / "d1" / "m.tif", movie.stack)
    rows = ["index,axis-0,axis-1,axis-2"] + [f"{i},{p.frame},{p.y},{p.x}" for i, p in enumerate(movie.points)]
    (tmp_path / "raw" / "d1" / "m.csv").write_text("\n".join(rows) + "\n")
    out = run("events", "extract", str(tmp_path / "raw"), "--out", str(tmp_path / "ev"), "--size", "32", "--negatives", "1")
    assert "2 event and 1 negative crops from 1 movie(s)" in out.stdout
    assert len(list((tmp_path / "ev" / "d1").glob("*/event.yaml"))) == 3
    assert "indexed 3 event(s)" in run("events", "index", str(tmp_path / "ev")).stdout
    out = run("events", "set", str(tmp_path / "ev"), "--out", str(tmp_path / "sets"), "--where", "label=event,negative")
    assert "train 3, val 0, test 0" in out.stdout  # one movie: all its events in one split
    bad = run("events", "set", str(tmp_path / "ev"), "--out", str(tmp_path / "sets"), "--where", "label:event", ok=False)
    assert "expected key=value" in bad.stderr
    bad = run("events", "extract", str(tmp_path / "nothing"), "--out", str(tmp_path / "ev2"), ok=False)
    assert "not a folder" in bad.stderr


def test_events_synth_then_extract(tmp_path):
    out = run("events", "synth", "--out", str(tmp_path / "raw"), "--n", "3", "--size", "64x80", "--frames", "12",
              "--events", "2", "--seed", "4")  # fmt: skip
    assert "wrote 3 synthetic movies (12 frames of 64x80) in 2 dataset(s) with 6 annotated split events" in out.stdout
    assert "next: napari-fibsem events extract" in out.stdout
    assert sorted(p.relative_to(tmp_path / "raw").as_posix() for p in (tmp_path / "raw").rglob("*.*")) == [
        "day1/cell_000.csv", "day1/cell_000.ome.tif", "day1/cell_002.csv", "day1/cell_002.ome.tif",
        "day1/db_manual.yaml", "day2/cell_001.csv", "day2/cell_001.ome.tif", "day2/db_manual.yaml", "db_manual.yaml",
    ]  # fmt: skip
    out = run("events", "extract", str(tmp_path / "raw"), "--out", str(tmp_path / "ev"), "--size", "32")
    assert "from 3 movie(s) in 2 dataset(s)" in out.stdout and len(list((tmp_path / "ev").glob("day*/*/event.yaml"))) >= 5
    bad = run("events", "synth", "--out", str(tmp_path / "raw"), "--n", "1", ok=False)
    assert "exists and is not empty" in bad.stderr


def test_engine_summary_and_export(tmp_path):
    from napari_fibsem.core.automation.engine import DataEngine
    from napari_fibsem.core.detection import detect_features
    from napari_fibsem.core.io.imageio import FibsemImage, ImageMetadata
    from napari_fibsem.core.synthetic.scene import generate_scene

    scene = generate_scene(0, size=(64, 96))
    image = FibsemImage(scene.image, ImageMetadata(pixel_size=scene.pixel_size))
    found = detect_features(image, mask=scene.mask, features=["LamellaCentre"], min_size=1)
    engine = DataEngine(tmp_path / "eng")
    engine.log(image, found)
    engine.log(image, found, found.with_point("LamellaCentre", 1, 1))
    out = run("engine", "summary", str(tmp_path / "eng")).stdout
    assert "LamellaCentre" in out and "50.0%" in out
    out = run("engine", "export", str(tmp_path / "eng"), "--out", str(tmp_path / "cur")).stdout
    assert (tmp_path / "cur" / "test_keypoints.csv").exists() and len(list((tmp_path / "cur" / "train").glob("*.tif"))) == 1
    assert "no detections.csv" in run("engine", "summary", str(tmp_path), ok=False).stderr


def test_closed_loop_names_a_missing_model(tmp_path):
    out = run("closed-loop", "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "cl"), ok=False)
    assert "nope.pt" in out.stderr and not (tmp_path / "cl" / "report.md").exists()
