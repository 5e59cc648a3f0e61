"""Assembling a run headlessly: the task registry, remembered choices, a run on the simulator, Stop, the Accept sentence."""

from __future__ import annotations

import math
import threading

import pytest

from napari_fibsem.core.automation.closed_loop import true_point
from napari_fibsem.core.automation.run_setup import (
    TASKS,
    RunSetup,
    SupervisedRun,
    get_task,
    load_settings,
    save_settings,
    settings_path,
)
from napari_fibsem.core.automation.workflow import (
    StepConfig,
    ValidationBroker,
    ValidationRequest,
    ValidationResult,
    describe_accept,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from napari_fibsem.core.models import create_model, save_bundle

    torch.manual_seed(1)
    model = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))
    return save_bundle(tmp_path_factory.mktemp("model") / "random.pt", model)


def _drain(gen):
    messages = []
    try:
        while True:
            messages.append(next(gen).message)
    except StopIteration as stop:
        return stop.value, messages


def test_unknown_task_lists_the_known_ones():
    assert get_task("align lamella (LamellaCentre)").feature == "LamellaCentre"
    with pytest.raises(KeyError, match="known tasks: .*align lamella"):
        get_task("polish")
    with pytest.raises(ValueError, match="unknown task"):
        RunSetup(task="polish")


def test_settings_round_trip_and_a_broken_file_gives_defaults(tmp_cache):
    assert settings_path().parent == tmp_cache
    assert load_settings() == RunSetup()
    setup = RunSetup(checkpoint="/models/a.pt", supervised=False, engine_dir="/data/engine")
    save_settings(setup)
    assert load_settings() == setup
    settings_path().write_text("{not json")
    assert load_settings() == RunSetup()


def test_a_person_placing_the_feature_centres_the_lamella(checkpoint, tmp_path):
    run: SupervisedRun | None = None
    asked: list[ValidationRequest] = []

    def person(request: ValidationRequest) -> ValidationResult:  # places LamellaCentre at the truth
        asked.append(request)
        x, y = true_point(run.microscope)
        return ValidationResult("accept", request.detected.with_point("LamellaCentre", x, y))

    run = SupervisedRun(RunSetup(checkpoint=str(checkpoint), engine_dir=str(tmp_path / "engine")), person)
    summary, messages = _drain(run.run())
    assert summary.state == "finished" and summary.iterations == len(asked) == 2 and summary.moves == 2
    assert [r.iteration for r in asked] == [1, 2] and asked[0].iterations == 4
    assert asked[0].config.feature == "LamellaCentre" and asked[0].class_map is not None
    assert summary.corrections >= 1 and math.hypot(*summary.final_offset_m) < 1e-6
    assert summary.engine_log == tmp_path / "engine" / "detections.csv" and summary.engine_log.exists()
    assert messages[0].startswith("connecting to the simulator") and len(messages) == 6
    assert messages[3].startswith("iteration 1: accept, offset +9.0") and messages[5].startswith("iteration 2: accept")
    assert summary.lines()[0] == "Run finished: LamellaCentre within 1.0 µm of the centre"


def test_stop_cancels_a_waiting_validation(checkpoint, tmp_path):
    broker = ValidationBroker()
    run = SupervisedRun(RunSetup(checkpoint=str(checkpoint), engine_dir=str(tmp_path / "engine")), broker)
    out = {}
    t = threading.Thread(target=lambda: out.update(result=_drain(run.run())))
    broker.requested.connect(lambda _request: run.stop())  # Stop pressed while the pop-up asks
    t.start()
    t.join(120)
    summary, _ = out["result"]
    assert summary.state == "stopped" and summary.moves == 0 and "Stop pressed" in summary.reason
    assert not (tmp_path / "engine" / "detections.csv").exists()


def test_the_accept_sentence_names_the_move_the_step_would_make():
    from dataclasses import replace

    import numpy as np

    from napari_fibsem.core.detection import detect_features

    mask = np.zeros((200, 300), np.uint8)
    mask[80:120, 100:200] = 1  # a lamella in the middle
    det = detect_features(None, features=["ImageCentre", "LamellaCentre"], mask=mask, pixel_size=1e-7)
    cx, cy = det.centre
    moved = det.with_point("LamellaCentre", cx + 30, cy + 20)  # 3 µm right, 2 µm down of the centre
    req = ValidationRequest("align", None, det, "LamellaCentre", "supervised", 2, 4, StepConfig(beam="ion"))
    assert describe_accept(req, moved) == (
        "Accept moves the stage 3.0 µm right, 2.0 µm down in the ion beam (iteration 2 of at most 4)")
    needle = ValidationRequest("align", None, det, "LamellaCentre", "supervised", config=StepConfig(move="manipulator"))
    assert describe_accept(needle, moved) == "Accept moves the needle 3.0 µm left, 2.0 µm up in the electron beam"
    far = det.with_point("LamellaCentre", cx + 600, cy)  # 60 µm: beyond the step's 50 µm guard
    assert describe_accept(req, far).startswith("Accept does not move: move of 60.0 um exceeds")
    gone = replace(det, features={**det.features, "LamellaCentre": replace(det["LamellaCentre"], px=None)})
    assert describe_accept(req, gone).startswith("LamellaCentre is not placed: add it where it is")
    assert describe_accept(req, det).startswith("Accept moves the stage by less than 0.1 µm")
    assert set(TASKS) == {"align lamella (LamellaCentre)"}
