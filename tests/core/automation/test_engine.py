"""Data engine: append-only log that survives concurrent and killed writers; summary and export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from napari_fibsem.core.automation.engine import COLUMNS, DataEngine
from napari_fibsem.core.detection import detect_features
from napari_fibsem.core.evaluation.run import load_eval_config, run_evaluation
from napari_fibsem.core.io.imageio import FibsemImage, ImageMetadata, read_labels
from napari_fibsem.core.synthetic.scene import generate_scene


def _detection(seed=0):
    scene = generate_scene(seed, size=(64, 96))
    image = FibsemImage(scene.image, ImageMetadata(pixel_size=scene.pixel_size, beam_type="ion"))
    found = detect_features(image, mask=scene.mask, features=["LamellaCentre", "NeedleTip"], min_size=1)
    return image, found


def test_log_summary_and_export_feed_labelling_and_evaluation(tmp_path):
    engine = DataEngine(tmp_path / "engine")
    image, found = _detection(0)
    engine.log(image, found, checkpoint="m1", step="align")  # accepted as detected
    image2, found2 = _detection(1)
    x, y = found2["LamellaCentre"].px
    engine.log(image2, found2, found2.with_point("LamellaCentre", x + 6, y + 8), checkpoint="m1", step="align")
    rows = engine.rows()
    assert [r["corrected"] for r in rows if r["feature"] == "LamellaCentre"] == ["False", "True"]
    moved = [r for r in rows if r["corrected"] == "True"][0]
    assert float(moved["distance_px"]) == 10.0 and moved["beam"] == "ion"
    out = engine.export(tmp_path / "curated")
    train = sorted(p.name for p in out["train"].glob("*.tif"))
    assert train == [moved["image"]]
    assert np.array_equal(read_labels(out["train"] / "labels" / train[0]), found2.mask)
    # the uncorrected image's points are test keypoints that `evaluate` reads
    (tmp_path / "e.yaml").write_text(
        f"data_path: {out['test_keypoints']}\nimages_path: {out['test']}\nsave_path: {tmp_path / 'ev'}\n"
        f"checkpoints: [{{masks: {tmp_path / 'engine' / 'masks'}, name: logged}}]\nplot_eval: false\n"
    )
    result = run_evaluation(load_eval_config(tmp_path / "e.yaml"))
    assert result.accuracy[0]["n"] >= 1 and result.accuracy[0]["mean_px"] == 0.0


def test_concurrent_writers_never_corrupt_the_log(tmp_path):
    engine = DataEngine(tmp_path / "engine")
    image, found = _detection(0)

    def write():
        for _ in range(10):
            engine.log(image, found, step="t")

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = (tmp_path / "engine" / "detections.csv").read_text()
    assert text.count("\n") == 1 + 4 * 10 * 2 and len(engine.rows()) == 80


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_writer_killed_mid_append_leaves_a_readable_log(tmp_path):
    root = tmp_path / "engine"
    DataEngine(root)
    script = textwrap.dedent(f"""
        from napari_fibsem.core.automation.engine import DataEngine
        e = DataEngine({str(root)!r})
        i = 0
        while True:
            e._append([{{c: ("x" * 50 if c == "step" else str(i)) for c in {COLUMNS!r}}}])
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    log = root / "detections.csv"
    deadline = time.time() + 60
    while (not log.exists() or log.stat().st_size < 200_000) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(log, "ab") as f:  # and a line cut in half, as a kill between two bytes would leave
        f.write(b"2026-01-01,half,a row")
    engine = DataEngine(root)
    rows = engine.rows()
    assert len(rows) > 100 and all(len(r) == len(COLUMNS) and r["step"] == "x" * 50 for r in rows)
    image, found = _detection(0)
    engine.log(image, found, step="after")
    after = engine.rows()
    assert len(after) == len(rows) + 2 and after[-1]["step"] == "after"


def test_engine_root_must_not_be_inside_the_package():
    import napari_fibsem

    with pytest.raises(ValueError, match="installed package"):
        DataEngine(os.path.join(os.path.dirname(napari_fibsem.__file__), "engine"))
