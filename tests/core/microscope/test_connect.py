"""Microscope interface: structures, configuration, safety (limits, confirmation), faults and
the event log, exercised through the simulator."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import yaml

from napari_fibsem.core.microscope import (
    ADAPTERS,
    AcquisitionError,
    AdapterNotAvailable,
    BeamType,
    CirclePattern,
    ConfigError,
    ConfirmationRequired,
    ConnectionLostError,
    ImageSettings,
    LimitError,
    LinePattern,
    MicroscopeConfig,
    MicroscopeState,
    Pattern,
    PolygonPattern,
    RectanglePattern,
    StagePosition,
    StageTimeoutError,
    connect,
    from_dict,
    load_config,
    parse_config,
    read_events,
    save_config,
    to_dict,
)

SMALL = ImageSettings((96, 64), hfw=40e-6, autocontrast=False)


@pytest.fixture
def sim(tmp_path):
    return connect({"simulator": {"seed": 0}, "stage_limits": {"x_m": [-1e-3, 1e-3]}},
                   event_log=tmp_path / "events.jsonl")


# -- structures ----------------------------------------------------------------------------------


def test_state_and_patterns_round_trip_through_json(sim):
    sim.insert_manipulator()
    state = sim.get_state()
    back = from_dict(MicroscopeState, json.loads(json.dumps(to_dict(state))))
    assert back == state and back.electron.beam is BeamType.ELECTRON
    patterns = [
        RectanglePattern(1e-6, 2e-6, 3e-6, 1e-6, 5e-7, rotation=0.1),
        LinePattern(0, 0, 1e-6, 1e-6, 1e-7),
        CirclePattern(0, 0, 1e-6, 1e-7),
        PolygonPattern(((0, 0), (1e-6, 0), (0, 1e-6)), 1e-7),
    ]
    data = yaml.safe_load(yaml.safe_dump(to_dict(patterns)))
    assert [d["kind"] for d in data] == ["rectangle", "line", "circle", "polygon"]
    assert from_dict(list[Pattern], data) == patterns
    assert PolygonPattern(((0, 0), (2, 0), (0, 2)), 1).area == pytest.approx(2.0)


def test_from_dict_names_unknown_and_bad_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['q'\]"):
        from_dict(StagePosition, {"x": 1.0, "q": 2})
    with pytest.raises(TypeError, match="StagePosition.x: expected a number"):
        from_dict(StagePosition, {"x": "far"})
    assert BeamType.of("ION_BEAM") is BeamType.ION
    with pytest.raises(ValueError, match="unknown beam"):
        ImageSettings(beam="xray")
    assert ImageSettings((1000, 500), hfw=100e-6).pixel_size == pytest.approx(1e-7)


# -- configuration ---------------------------------------------------------------------------


def test_config_yaml_round_trip_and_defaults(tmp_path):
    cfg = parse_config({"name": "lab-1", "pre_tilt_deg": 35, "simulator": {"seed": 3}})
    assert cfg.column_tilt("ion") == pytest.approx(math.radians(52)) and cfg.column_tilt(BeamType.ELECTRON) == 0
    assert cfg.pre_tilt == pytest.approx(math.radians(35)) and cfg.is_simulator
    path = save_config(cfg, tmp_path / "system.yaml")
    assert load_config(path) == cfg
    assert cfg.system_info()["fingerprint"] == load_config(path).system_info()["fingerprint"]


@pytest.mark.parametrize(
    "data, key",
    [
        ({"stage_limits": {"x_mm": [0, 1]}}, "stage_limits.x_mm: unknown key"),
        ({"max_step_m": "big"}, "max_step_m"),
        ({"stage_limits": {"y_m": [1, -1]}}, "stage_limits.y_m"),
        ({"beams": {"ion": {"voltage_v": -1, "current_a": 1e-9}}}, "beams.ion.voltage_v"),
        ({"simulator": {"faults": [{"kind": "meteor"}]}}, "simulator.faults.0.kind"),
        ({"manufacturer": "Zeiss"}, "manufacturer"),
        ({"manufacturer": "Tescan", "simulator": {}}, "only for manufacturer Demo"),
    ],
)
def test_config_errors_name_the_file_and_key(tmp_path, data, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(path) in str(e.value) and key in str(e.value)


@pytest.mark.parametrize(
    ("manufacturer", "sdk"),
    [("ThermoFisher", "autoscript_sdb_microscope_client"), ("Thermo Fisher", "autoscript_sdb_microscope_client"),
     ("TESCAN", "tescanautomation")],
)  # fmt: skip
def test_vendor_adapters_give_a_clear_error_when_missing(monkeypatch, manufacturer, sdk):
    assert {"demo", "simulator", "thermofisher", "tescan"} <= set(ADAPTERS)
    monkeypatch.setitem(sys.modules, sdk, None)  # the vendor SDK cannot be imported, whatever is installed
    with pytest.raises(AdapterNotAvailable) as e:
        connect({"manufacturer": manufacturer})
    message = str(e.value)
    assert "adapter is not available" in message and f"'{sdk}'" in message and "cannot be imported" in message
    assert "'manufacturer: Demo'" in message or "Demo" in message.split("cannot be imported")[1]


# -- safety ----------------------------------------------------------------------------------


def test_moves_outside_limits_are_refused_and_nothing_moves(sim):
    start = sim.get_stage_position()
    with pytest.raises(LimitError, match=r"x=2\.0000mm is outside the stage limits.*nothing moved"):
        sim.move_stage_absolute(StagePosition(x=2e-3), confirm=True)
    with pytest.raises(LimitError, match="t="):
        sim.move_stage_relative(dt=math.radians(80), confirm=True)
    with pytest.raises(LimitError):
        sim.move_stage_absolute(StagePosition(z=float("nan")), confirm=True)
    assert sim.get_stage_position() == start
    with pytest.raises(LimitError, match="beam shift"):
        sim.shift_beam(1e-3, 0, "ion")
    assert sim.get_beam_settings("ion").shift == (0.0, 0.0)


def test_large_moves_need_confirmation(sim):
    with pytest.raises(ConfirmationRequired, match="confirm=True"):
        sim.move_stage_relative(dx=500e-6)
    with pytest.raises(ConfirmationRequired):
        sim.stable_move(0, 300e-6, "ion")  # 300 µm / cos 52° along y
    assert sim.get_stage_position() == StagePosition()
    assert sim.move_stage_relative(dx=500e-6, confirm=True).x == pytest.approx(500e-6)
    assert sim.move_stage_relative(dx=50e-6).x == pytest.approx(550e-6)  # small steps need none


def test_set_state_restores_a_snapshot(sim):
    state = sim.get_state()
    sim.move_stage_relative(10e-6, -5e-6, dt=0.1)
    sim.shift_beam(1e-6, 0, "electron")
    sim.insert_manipulator()
    restored = sim.set_state(state)
    assert restored.stage == state.stage and restored.electron == state.electron
    assert restored.manipulator == state.manipulator


def test_calls_before_connect_are_refused():
    from napari_fibsem.core.microscope.simulator import SimulatedMicroscope

    m = SimulatedMicroscope()
    with pytest.raises(ConnectionLostError, match="not connected"):
        m.get_stage_position()
    m.connect()
    assert m.get_chamber_state().vacuum == "pumped"


# -- faults ----------------------------------------------------------------------------------


def test_acquisition_fault_is_clear_and_leaves_state_consistent(sim):
    sim.move_stage_relative(5e-6)
    sim.inject_fault("acquisition")
    with pytest.raises(AcquisitionError, match="injected.*state re-read: stage at x=5"):
        sim.acquire_image(SMALL)
    assert sim.state_known and sim.get_stage_position().x == pytest.approx(5e-6)
    assert sim.acquire_image(SMALL).data.shape == (64, 96)


def test_stage_timeout_re_reads_the_position(sim):
    sim.inject_fault("stage_timeout")
    with pytest.raises(StageTimeoutError, match="did not reach.*state re-read"):
        sim.move_stage_relative(dx=100e-6)
    pos = sim.get_stage_position()
    assert pos.x == pytest.approx(50e-6) and pos == sim._stage  # stopped on the way, and known
    assert sim.move_stage_absolute(StagePosition(x=100e-6)).x == pytest.approx(100e-6)


def test_connection_loss_refuses_until_reconnect(sim):
    sim.move_stage_relative(dy=7e-6)
    sim.inject_fault("connection_loss", after=1)
    sim.acquire_image(SMALL)  # the first call still works
    with pytest.raises(ConnectionLostError, match="reconnect"):
        sim.acquire_image(SMALL)
    assert not sim.connected and not sim.state_known
    with pytest.raises(ConnectionLostError, match="reconnect"):
        sim.move_stage_relative(dx=1e-6)
    sim.reconnect()
    assert sim.state_known and sim.get_stage_position().y == pytest.approx(7e-6)


def test_faults_from_config():
    sim = connect({"simulator": {"faults": [{"kind": "acquisition", "after": 1, "count": 2}]}})
    sim.acquire_image(SMALL)
    for _ in range(2):
        with pytest.raises(AcquisitionError):
            sim.acquire_image(SMALL)
    assert isinstance(sim.acquire_image(SMALL).data, np.ndarray)


# -- event log -------------------------------------------------------------------------------


def test_event_log_is_json_lines_with_op_names(sim, tmp_path):
    sim.acquire_image(SMALL)
    sim.move_stage_relative(dx=1e-6)
    with pytest.raises(ConfirmationRequired):
        sim.move_stage_relative(dx=0.5e-3)
    sim.inject_fault("acquisition")
    with pytest.raises(AcquisitionError):
        sim.acquire_image(SMALL)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records == read_events(tmp_path / "events.jsonl")
    ops = [r["op"] for r in records]
    assert ops == ["connect", "acquire_image", "move_stage_relative", "move_stage_relative", "acquire_image"]
    for r in records:
        assert {"time", "op", "args", "ok", "duration_s"} <= set(r)
    assert records[1]["result"]["image"] == [64, 96] and records[1]["args"]["settings"]["beam"] == "electron"
    assert records[2]["ok"] and records[2]["result"]["x"] == pytest.approx(1e-6)
    refused, failed = records[3], records[4]
    assert not refused["ok"] and refused["error"]["type"] == "ConfirmationRequired"
    assert failed["error"]["type"] == "AcquisitionError" and failed["stage_after"]["x"] == pytest.approx(1e-6)
    assert len(sim.events.records) == len(records)


def test_config_event_log_path(tmp_path):
    path = tmp_path / "log" / "ops.jsonl"
    sim = connect(MicroscopeConfig(event_log=str(path)))
    sim.get_stage_position()
    assert [r["op"] for r in read_events(path)] == ["connect", "get_stage_position"]
