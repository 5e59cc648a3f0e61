"""Supervised steps on the simulator: alignment converges, corrections are logged, the guard holds."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from napari_fibsem.core.automation.engine import DataEngine
from napari_fibsem.core.automation.workflow import (
    ScriptedValidator,
    StepConfig,
    ValidationBroker,
    ValidationResult,
    WorkflowCancelled,
    align_feature,
    run_step,
)
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.microscope import ImageSettings, connect
from napari_fibsem.core.models.base import Prediction
from napari_fibsem.core.synthetic.scene import keypoints_from_mask

SETTINGS = ImageSettings(resolution=(384, 256), hfw=60e-6, beam="electron")


class OracleModel:
    """Segments by reading the simulator's ground-truth mask (optionally shifted: a wrong model)."""

    class_map = ClassMap.default()
    backend = "oracle"

    def __init__(self, sim, shift_px: int = 0) -> None:
        self.sim, self.shift = sim, shift_px

    def predict(self, image):
        mask = self.sim.last_mask("electron")
        if self.shift:
            mask = np.roll(mask, self.shift, axis=1)
        return Prediction(mask=mask, probs=None)


def _lamella_offset_m(sim) -> tuple[float, float]:
    """Where the lamella really is (ground truth), metres from the centre, +y up."""
    mask = sim.last_mask("electron")
    x, y = keypoints_from_mask(mask)["LamellaCentre"]
    h, w = mask.shape
    ps = SETTINGS.pixel_size
    return (x - (w - 1) / 2) * ps, -(y - (h - 1) / 2) * ps


@pytest.fixture
def sim():
    m = connect({"simulator": {"seed": 0}})
    m.move_stage_relative(dx=-9e-6, dy=6e-6)  # the lamella is now off-centre
    m.acquire_image(SETTINGS)
    return m


def test_unsupervised_alignment_centres_the_lamella(sim, tmp_path):
    start = math.hypot(*_lamella_offset_m(sim))
    assert start > 5e-6
    engine = DataEngine(tmp_path / "engine")
    cfg = StepConfig(feature="LamellaCentre", beam="electron", image_settings=SETTINGS)
    results = align_feature(sim, OracleModel(sim), cfg, engine=engine, tolerance_m=1e-6, max_iterations=3)
    moves = [r for r in results if r.moved]
    assert 1 <= len(moves) <= 3
    sim.acquire_image(SETTINGS)
    assert math.hypot(*_lamella_offset_m(sim)) < 1e-6
    rows = engine.rows()
    assert len(rows) == 2 * len(results) and all(r["corrected"] == "False" for r in rows)


def test_supervised_correction_of_a_wrong_detection_is_logged(sim, tmp_path):
    engine = DataEngine(tmp_path / "engine")
    truth = keypoints_from_mask(sim.last_mask("electron"))["LamellaCentre"]
    validator = ScriptedValidator({"LamellaCentre": truth})
    cfg = StepConfig(feature="LamellaCentre", image_settings=SETTINGS, supervised=True, checkpoint="wrong")
    result = run_step(sim, OracleModel(sim, shift_px=40), cfg, validator, engine)
    assert result.action == "accept" and result.moved and validator.requests[0].reason == "supervised"
    sim.acquire_image(SETTINGS)
    assert math.hypot(*_lamella_offset_m(sim)) < 1e-6  # moved by the corrected point, not the wrong one
    row = next(r for r in engine.rows() if r["feature"] == "LamellaCentre")
    assert row["corrected"] == "True" and row["checkpoint"] == "wrong"
    assert float(row["distance_px"]) == pytest.approx(40, abs=0.5)
    assert float(row["distance_m"]) == pytest.approx(40 * SETTINGS.pixel_size, rel=0.02)
    summary = {s["feature"]: s for s in engine.summary()}
    assert summary["LamellaCentre"]["correction_rate"] == 1.0 and summary["ImageCentre"]["corrected"] == 0


def test_guard_refuses_large_moves_and_missing_features_unsupervised(sim, tmp_path):
    before = sim.get_stage_position()
    cfg = StepConfig(feature="LamellaCentre", image_settings=SETTINGS, max_move_m=2e-6)
    result = run_step(sim, OracleModel(sim), cfg, engine=DataEngine(tmp_path / "e"))
    assert result.action == "stop" and not result.moved and "exceeds the 2.0 um limit" in result.reason
    cfg = StepConfig(feature="NeedleTip", image_settings=SETTINGS)
    result = run_step(sim, OracleModel(sim), cfg)
    assert result.action == "stop" and "NeedleTip not found" in result.reason
    assert sim.get_stage_position() == before
    # supervised, the person is asked instead; a person who skips means no move either
    skip = ScriptedValidator(action="skip")
    cfg = StepConfig(feature="LamellaCentre", image_settings=SETTINGS, max_move_m=2e-6)
    result = run_step(sim, OracleModel(sim), cfg, skip)
    assert result.action == "skip" and "exceeds" in skip.requests[0].reason
    assert sim.get_stage_position() == before


def test_waiting_for_a_person_blocks_without_polling_and_stop_cancels(sim):
    broker = ValidationBroker()
    seen = threading.Event()
    broker.requested.connect(lambda req: seen.set())
    outcome = {}

    def worker():
        try:
            run_step(sim, OracleModel(sim), StepConfig(image_settings=SETTINGS, supervised=True), broker)
        except WorkflowCancelled as e:
            outcome["cancelled"] = str(e)

    before = sim.get_stage_position()
    t = threading.Thread(target=worker)
    t.start()
    assert seen.wait(30) and broker.pending is not None
    broker.cancel()
    t.join(10)
    assert not t.is_alive() and "cancelled while waiting" in outcome["cancelled"]
    assert sim.get_stage_position() == before
    # answering instead lets the step go on
    broker.reset()
    answers = []

    def answer(req):
        answers.append(req)
        threading.Timer(0.05, lambda: broker.answer(ValidationResult("accept", req.detected))).start()

    broker.requested.connect(answer)
    result = run_step(sim, OracleModel(sim), StepConfig(image_settings=SETTINGS, supervised=True), broker)
    assert result.moved and answers
