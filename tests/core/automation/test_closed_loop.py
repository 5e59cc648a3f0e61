"""The closed loop with a model trained on simulator images, as the README's main command runs it.

One module fixture runs the demo's closed-loop part (48 simulator images, 5 epochs, ~1-2 min on
2 CPU cores); the tests then check the runs against the simulator's ground truth, the data
engine's rows and the report.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import tifffile

from napari_fibsem.core.automation.closed_loop import LOOP_SETTINGS, simulator_dataset
from napari_fibsem.core.data.dataset import discover, validate
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("loop") / "demo"
    return run_demo(out, n=1, size=(64, 96), epochs=0, loop_scenes=48, loop_epochs=5, event_epochs=0)


def test_simulator_dataset_is_a_valid_training_folder(tmp_path):
    summary = simulator_dataset(tmp_path / "ds", n=6, per_world=4)
    assert summary.startswith("6 simulator images") and "from 2 worlds" in summary
    index = discover(tmp_path / "ds")
    validate(index, ClassMap.default())
    assert len(index.samples) == 6 and len(index.labelled) == 6
    w, h = LOOP_SETTINGS.resolution
    labels = [tifffile.imread(s.label) for s in index.samples]
    assert all(lab.shape == (h, w) for lab in labels)
    # the lamella (class 1) is in every image, at different places (random stage offsets)
    centres = [np.argwhere(lab == 1).mean(axis=0) for lab in labels]
    assert len({tuple(np.round(c)) for c in centres}) == 6


def test_unsupervised_trained_model_centres_the_lamella(demo):
    unsupervised = demo.loop_runs[0]
    assert not unsupervised.supervised and unsupervised.start_m > 5e-6
    assert unsupervised.converged and unsupervised.final_m < 1e-6
    assert 1 <= unsupervised.moves <= 3
    # the model found the lamella itself: its first detection is close to the truth
    assert unsupervised.iterations[0].detection_error_m < 1e-6
    line = next(x for x in demo.lines if x.startswith("8a. unsupervised: lamella"))
    assert "(within 1 um)" in line


def test_supervised_correction_of_a_wrong_model_centres_the_lamella(demo):
    supervised = demo.loop_runs[1]
    assert supervised.supervised and supervised.requests == len(supervised.iterations)
    first = supervised.iterations[0]
    # the detection was wrong by 40 px (6.25 um at 0.156 um/px), the person's answer was acted on
    assert first.detection_error_m == pytest.approx(40 * LOOP_SETTINGS.pixel_size, abs=1e-6)
    assert math.dist(first.acted_offset_m, first.true_offset_m) < 1e-9
    assert supervised.converged and 1 <= supervised.moves <= 3


def test_engine_rows_and_report(demo):
    loop = demo.out / "closed_loop"
    with open(loop / "engine" / "detections.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["feature"] == "LamellaCentre"]
    unsup = [r for r in rows if r["step"] == "unsupervised"]
    sup = [r for r in rows if r["step"] == "supervised"]
    assert len(unsup) == len(demo.loop_runs[0].iterations) and len(sup) == len(demo.loop_runs[1].iterations)
    assert all(r["corrected"] == "False" for r in unsup)
    assert all(r["corrected"] == "True" and abs(float(r["distance_px"]) - 40) < 2 for r in sup)
    report = (loop / "report.md").read_text()
    for text in ("## unsupervised", "## supervised", "| step | true offset |", "LamellaCentre", "corrected"):
        assert text in report
    from matplotlib.image import imread

    for name in ("unsupervised.png", "supervised.png"):
        assert f"]({name})" in report
        figure = imread(loop / name)
        assert figure.shape[0] > 200 and figure[..., :3].std() > 0.1  # a drawn figure, not a blank canvas
