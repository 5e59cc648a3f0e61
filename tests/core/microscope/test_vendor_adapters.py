"""Vendor adapters (ThermoFisher AutoScript, TESCAN Automation) against the fake SDKs in
``fake_sdks/``: units, axes and beam mapping as the SDK receives them, safety checks before
anything is sent, SDK errors translated and the state re-read, milling, and the registry."""

from __future__ import annotations

import dataclasses
import importlib
import math
import sys
import threading
from pathlib import Path

import pytest

from napari_fibsem.core.io.imageio import FibsemImage
from napari_fibsem.core.microscope import (
    AcquisitionError,
    AdapterNotAvailable,
    BeamSettings,
    BeamType,
    CirclePattern,
    ConfirmationRequired,
    ConnectionLostError,
    ImageSettings,
    LimitError,
    LinePattern,
    MicroscopeError,
    MillingSettings,
    NotSupportedError,
    PolygonPattern,
    RectanglePattern,
    StagePosition,
    StageTimeoutError,
    connect,
    parse_config,
)

FAKES = Path(__file__).parent / "fake_sdks"
SDKS = {"thermofisher": "autoscript_sdb_microscope_client", "tescan": "tescanautomation"}
MANUFACTURER = {"thermofisher": "ThermoFisher", "tescan": "Tescan"}
ADAPTER = {"thermofisher": "ThermoFisherMicroscope", "tescan": "TescanMicroscope"}
READ = {"thermofisher": "specimen.stage.current_position", "tescan": "Stage.GetPosition"}
MOVE = {"thermofisher": "specimen.stage.absolute_move", "tescan": "Stage.MoveTo"}
GRAB = {"thermofisher": "imaging.grab_frame", "tescan": "SEM.Scan.AcquireImageFromChannel"}
VENDORS = ["thermofisher", "tescan"]


def _forget_sdks() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in (*SDKS.values(), "fake_sdk_recorder"):
            del sys.modules[name]


@pytest.fixture
def fake_sdks(monkeypatch):
    """The fake SDKs importable for one test; nothing of them is left in sys.modules after."""
    _forget_sdks()
    monkeypatch.syspath_prepend(str(FAKES))
    yield
    _forget_sdks()


def _open(vendor: str, **config):
    """A connected adapter and its (fresh) fake SDK with an empty call log."""
    sdk = importlib.import_module(SDKS[vendor])
    sdk.reset()
    m = connect(parse_config({"manufacturer": MANUFACTURER[vendor], "ip_address": "10.0.0.7", **config}))
    m.poll_interval_s = 0.0
    sdk.CALLS.clear()
    return m, sdk


@pytest.fixture(params=VENDORS)
def rig(request, fake_sdks):
    m, sdk = _open(request.param)
    return request.param, m, sdk


@pytest.fixture
def thermo(fake_sdks):
    return _open("thermofisher")


@pytest.fixture
def tescan(fake_sdks):
    return _open("tescan")


def _place_stage(vendor: str, sdk, p: StagePosition) -> None:
    """Put the fake stage at ``p``, written in the vendor's own units."""
    if vendor == "thermofisher":
        sdk.STATE.stage.update(x=p.x, y=p.y, z=p.z, r=p.r, t=p.t)
    else:
        sdk.STATE.stage[:5] = [p.x * 1e3, p.y * 1e3, p.z * 1e3, math.degrees(p.r), math.degrees(p.t)]


def _small(beam: str = "electron", **kw) -> ImageSettings:
    return ImageSettings((96, 64), hfw=40e-6, beam=beam, autocontrast=False, **kw)


# -- registry, lazy import, missing SDK ----------------------------------------------------------


@pytest.mark.parametrize("vendor, manufacturer", [("thermofisher", "Thermo Fisher"), ("tescan", "TESCAN")])
def test_connect_picks_the_adapter_and_imports_the_sdk_only_then(fake_sdks, vendor, manufacturer):
    module = importlib.import_module(f"napari_fibsem.core.microscope.{vendor}")
    assert SDKS[vendor] not in sys.modules  # importing the adapter does not import the SDK
    m = connect({"manufacturer": manufacturer, "ip_address": "10.0.0.7"})
    sdk = sys.modules[SDKS[vendor]]
    assert type(m) is getattr(module, ADAPTER[vendor]) and m.connected and m.state_known
    if vendor == "thermofisher":
        assert sdk.CALLS[1].name == "connect" and sdk.CALLS[1].args == ("10.0.0.7",)
        assert sdk.calls("specimen.stage.set_default_coordinate_system")[0].args == ("Raw",)
    else:
        assert sdk.CALLS[0].name == "Automation" and sdk.CALLS[0].args == ("10.0.0.7", 8300)
    assert READ[vendor] in sdk.names()  # connect reads the state
    m.disconnect()
    assert sdk.names()[-1] in ("disconnect", "Disconnect") and not m.connected
    connect({"manufacturer": manufacturer, "ip_address": "10.0.0.8:4242"})
    first = sdk.calls("connect" if vendor == "thermofisher" else "Automation")[-1]
    assert first.args == ("10.0.0.8", 4242)


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_missing_sdk_raises_adapter_not_available_naming_the_package(monkeypatch, vendor):
    monkeypatch.setitem(sys.modules, SDKS[vendor], None)  # "import" of it now fails
    with pytest.raises(AdapterNotAvailable) as e:
        connect({"manufacturer": MANUFACTURER[vendor]})
    msg = str(e.value)
    assert SDKS[vendor] in msg and "not available" in msg and "install" in msg and "Demo" in msg


# -- units, axes, beam mapping -------------------------------------------------------------------


def test_thermofisher_passes_si_units_and_maps_beams_to_views(thermo):
    m, sdk = thermo
    target = StagePosition(x=1e-3, y=-2e-3, z=0.5e-3, r=0.25, t=0.5)
    reached = m.move_stage_absolute(target, confirm=True)
    sent = sdk.calls(MOVE["thermofisher"])[-1].args[0]
    assert (sent.x, sent.y, sent.z, sent.r, sent.t) == (1e-3, -2e-3, 0.5e-3, 0.25, 0.5)  # SI, unchanged
    assert sent.coordinate_system == "Raw"
    assert reached == target  # read back from the fake: reads reflect writes

    for beam, view, attr in (("electron", 1, "electron_beam"), ("ion", 2, "ion_beam")):
        sdk.CALLS.clear()
        image = m.acquire_image(_small(beam, dwell_time=2e-6))
        hfw = f"beams.{attr}.horizontal_field_width.value="
        assert sdk.names()[:3] == ["imaging.set_active_view", hfw, "imaging.grab_frame"]
        assert sdk.CALLS[0].args == (view,) and sdk.CALLS[1].args == (40e-6,)
        grab = sdk.CALLS[2].args[0]
        assert (grab.resolution, grab.dwell_time) == ("96x64", 2e-6)
        assert isinstance(image, FibsemImage) and image.data.shape == (64, 96)
        assert image.data[0, 0] == 40 * view  # the fake draws view 1 as 40, view 2 as 80
        assert image.metadata.pixel_size == pytest.approx(40e-6 / 96) and image.metadata.beam_type == beam

    sdk.CALLS.clear()
    m.autocontrast("ion")
    assert sdk.names() == ["imaging.set_active_view", "auto_functions.run_auto_cb"]
    assert sdk.CALLS[0].args == (2,)

    ion = m.get_beam_settings("ion")
    assert (ion.voltage, ion.current, ion.working_distance, ion.hfw) == (30e3, 300e-12, 16.5e-3, 40e-6)
    assert ion.resolution == (1536, 1024) and ion.enabled
    sdk.CALLS.clear()
    m.shift_beam(1e-6, -2e-6, "electron")
    writes = [c for c in sdk.CALLS if c.name.endswith("=")]
    assert [c.name for c in writes] == ["beams.electron_beam.beam_shift.value="]  # nothing else rewritten
    assert (writes[0].args[0].x, writes[0].args[0].y) == (1e-6, -2e-6)


def test_tescan_converts_to_millimetres_degrees_nanoseconds_and_maps_beams_to_columns(tescan):
    m, sdk = tescan
    target = StagePosition(x=1e-3, y=-2e-3, z=0.5e-3, r=0.25, t=0.5)
    reached = m.move_stage_absolute(target, confirm=True)
    sent = sdk.calls("Stage.MoveTo")[-1].kwargs
    assert (sent["x"], sent["y"], sent["z"]) == (1.0, -2.0, 0.5)  # mm
    assert sent["tiltx"] == pytest.approx(28.6479, abs=1e-4)  # 0.5 rad
    assert sent["rot"] == pytest.approx(14.3239, abs=1e-4)  # 0.25 rad
    assert all(math.isclose(getattr(reached, a), getattr(target, a), abs_tol=1e-15) for a in "xyzrt")

    for beam, col, other in (("electron", "SEM", "FIB"), ("ion", "FIB", "SEM")):
        sdk.CALLS.clear()
        image = m.acquire_image(_small(beam, dwell_time=1e-6))
        assert sdk.calls(f"{col}.Optics.SetViewfield")[0].args == (pytest.approx(0.04),)  # 40 µm = 0.04 mm
        assert sdk.calls(f"{col}.Scan.AcquireImageFromChannel")[0].args == (0, 96, 64, 1000)  # 1 µs = 1000 ns
        # the other column is only read (the image metadata holds both beams), never set or scanned
        assert not [n for n in sdk.names() if n.startswith((f"{other}.Scan", f"{other}.Optics.Set"))]
        assert isinstance(image, FibsemImage) and image.data.shape == (64, 96)
        assert image.metadata.pixel_size == pytest.approx(40e-6 / 96) and image.metadata.beam_type == beam

    sem = m.get_beam_settings("electron")  # pA -> A, mm -> m; dwell/resolution of the last acquisition
    assert (sem.current, sem.working_distance, sem.hfw) == (pytest.approx(50e-12), 4e-3, pytest.approx(40e-6))
    assert (sem.dwell_time, sem.resolution, sem.voltage) == (1e-6, (96, 64), 2000.0)
    assert m.get_beam_settings("ion").working_distance == m.config.beams.ion.working_distance_m
    sdk.CALLS.clear()
    m.shift_beam(1e-6, -2e-6, "ion")
    assert sdk.calls("FIB.Optics.SetImageShift")[0].args == (pytest.approx(1e-3), pytest.approx(-2e-3))
    assert m.get_beam_settings("ion").shift == pytest.approx((1e-6, -2e-6))
    sdk.CALLS.clear()
    m.autocontrast("electron")
    assert sdk.names() == ["SEM.Detector.Get", "SEM.Detector.AutoSignal"]
    sdk.STATE.stage[4] = float("nan")  # a tilt reading that is not a number is never taken as 0
    with pytest.raises(MicroscopeError, match="not a number"):
        m.get_stage_position()
    assert not m.state_known


@pytest.mark.parametrize("beam", ["electron", "ion"])
def test_stable_and_vertical_moves_match_the_simulator(fake_sdks, beam):
    from napari_fibsem.core.microscope.simulator import SimulatedMicroscope

    start = StagePosition(x=1e-4, y=-2e-4, z=1e-3, r=0.0, t=math.radians(10))
    for vendor in VENDORS:
        m, sdk = _open(vendor, pre_tilt_deg=35.0)
        sim = SimulatedMicroscope(m.config.model_copy(update={"manufacturer": "Demo"}))
        sim.connect()
        sim.move_stage_absolute(start, confirm=True)
        _place_stage(vendor, sdk, start)
        for move in (lambda s: s.stable_move(5e-6, -3e-6, beam), lambda s: s.vertical_move(2e-6, beam)):
            got, want = move(m), move(sim)
            same = all(math.isclose(getattr(got, a), getattr(want, a), abs_tol=1e-12) for a in "xyzrt")
            assert same, (vendor, got, want)
        assert abs((got.y - start.y) - 2e-6) > 1e-9  # the beam angle mattered: not a plain image offset
        assert len(sdk.calls(MOVE[vendor])) == 2


# -- safety before the SDK ------------------------------------------------------------------------


def test_limits_and_confirmation_are_enforced_before_anything_is_sent(rig):
    vendor, m, sdk = rig
    state = m.get_state()
    sdk.CALLS.clear()
    for confirm in (True, False):
        with pytest.raises(LimitError, match="outside the stage limits"):
            m.move_stage_absolute(StagePosition(x=20e-3), confirm=confirm)
        with pytest.raises(LimitError, match="z="):
            m.set_state(dataclasses.replace(state, stage=StagePosition(z=-20e-3)), confirm=confirm)
    with pytest.raises(LimitError, match="r=nan"):
        m.move_stage_absolute(StagePosition(r=math.nan), confirm=True)
    assert sdk.CALLS == []  # an out-of-limits target is refused without a single SDK call
    with pytest.raises(ConfirmationRequired):
        m.move_stage_absolute(StagePosition(x=1e-3))
    assert sdk.names() == [READ[vendor]]  # the step check needs the position; nothing moved
    sdk.CALLS.clear()
    with pytest.raises(ConfirmationRequired):
        m.move_stage_relative(dx=1e-3)
    with pytest.raises(LimitError, match="t="):
        m.move_stage_relative(dt=math.radians(80), confirm=True)
    assert sdk.names() == [READ[vendor]] * 2  # one read each, to know the target; nothing moved
    sdk.CALLS.clear()
    electron = m.config.beams.electron
    with pytest.raises(LimitError, match="beam shift"):
        m.set_beam_settings(
            BeamSettings(BeamType.ELECTRON, electron.voltage_v, electron.current_a, 1e-4, shift=(50e-6, 0))
        )
    assert sdk.CALLS == []  # refused before a single SDK call
    with pytest.raises(NotSupportedError, match="raw stage coordinates"):
        m.move_stage_absolute(StagePosition(coordinate_system="specimen"))
    assert MOVE[vendor] not in sdk.names()


def test_a_stage_position_that_is_not_a_number_needs_confirmation(rig, monkeypatch):
    vendor, m, sdk = rig  # the adapters refuse such a read themselves; this is the base class's guard
    monkeypatch.setattr(m, "_read_stage_position", lambda: StagePosition(x=math.nan))
    with pytest.raises(ConfirmationRequired, match="cannot be checked"):
        m.move_stage_absolute(StagePosition(x=1e-6))
    with pytest.raises(ConfirmationRequired, match="cannot be checked"):
        m.set_state(dataclasses.replace(m.get_state(), stage=StagePosition(x=1e-6)))
    assert MOVE[vendor] not in sdk.names()
    m.move_stage_absolute(StagePosition(x=1e-6), confirm=True)  # the target itself is within limits
    assert sdk.names().count(MOVE[vendor]) == 1


# -- SDK errors -----------------------------------------------------------------------------------


def test_sdk_errors_become_our_errors_with_their_message_and_the_stage_is_re_read(rig):
    vendor, m, sdk = rig
    sdk.fail_next(GRAB[vendor], RuntimeError("detector not ready"))
    with pytest.raises(AcquisitionError, match="detector not ready") as e:
        m.acquire_image(_small())
    assert "RuntimeError" in str(e.value) and "state re-read" in str(e.value)
    names = sdk.names()
    assert READ[vendor] in names[names.index(GRAB[vendor]) :]  # the stage was read after the failure
    record = m.events.records[-1]
    assert record["op"] == "acquire_image" and not record["ok"] and record["stage_after"] is not None
    assert m.state_known and m.connected

    sdk.fail_next(MOVE[vendor], RuntimeError("stage motor fault"))
    with pytest.raises(MicroscopeError, match="stage motor fault.*state re-read"):
        m.move_stage_relative(dx=10e-6)
    names = sdk.names()
    assert READ[vendor] in names[names.index(MOVE[vendor]) :]
    sdk.fail_next(MOVE[vendor], TimeoutError("move did not finish"))
    with pytest.raises(StageTimeoutError, match="move did not finish"):
        m.move_stage_relative(dx=10e-6)

    sdk.fail_next(READ[vendor], ConnectionResetError("connection reset by peer"))
    with pytest.raises(ConnectionLostError, match="connection reset by peer"):
        m.get_stage_position()
    assert not m.connected and not m.state_known
    sdk.CALLS.clear()
    with pytest.raises(ConnectionLostError, match="reconnect"):
        m.get_stage_position()
    assert sdk.CALLS == []  # refused without touching the SDK
    m.reconnect()
    assert m.connected and m.get_stage_position() is not None


def test_the_image_records_the_pixel_size_the_instrument_reports(rig):
    vendor, m, sdk = rig
    image = m.acquire_image(ImageSettings((100, 50), hfw=5e-3, autocontrast=False))  # fakes stop at 2 mm
    assert image.metadata.pixel_size == pytest.approx(2e-3 / 100)  # not the requested 5e-5
    assert m.last_image("electron") is image
    warning, record = list(m.events)[-2:]
    assert warning["op"] == "warning" and "limited the field width" in warning["message"]
    assert warning["reported_pixel_size"] == pytest.approx(2e-5) and warning["requested_pixel_size"] == 5e-5
    assert record["op"] == "acquire_image" and record["ok"]
    assert record["result"]["pixel_size"] == pytest.approx(2e-5)
    m.acquire_image(_small())
    assert list(m.events)[-2]["op"] != "warning"  # a field width the instrument keeps: no warning


# -- milling --------------------------------------------------------------------------------------

PATTERNS = [
    RectanglePattern(1e-6, -2e-6, 4e-6, 3e-6, 5e-7, rotation=0.1),
    LinePattern(0.0, 0.0, 2e-6, 1e-6, 1e-7),
    CirclePattern(3e-6, 3e-6, 1e-6, 2e-7),
]


def test_thermofisher_milling_creates_the_patterns_and_runs_them(thermo):
    m, sdk = thermo
    m.setup_milling(MillingSettings(current=1e-9, voltage=30e3, hfw=50e-6, patterning_mode="parallel"))
    writes = {c.name: c.args for c in sdk.CALLS if c.name.endswith("=")}
    assert writes == {
        "patterning.mode=": ("Parallel",),
        "beams.ion_beam.beam_current.value=": (1e-9,),
        "beams.ion_beam.horizontal_field_width.value=": (50e-6,),
    }  # voltage unchanged: not written
    assert sdk.calls("patterning.set_default_beam_type")[0].args == (2,)
    assert sdk.calls("imaging.set_active_view")[0].args == (2,)
    sdk.CALLS.clear()
    progress = []
    polygon = PolygonPattern(((0, 0), (1e-6, 0), (0, 1e-6)), 1e-7)
    result = m.run_milling([*PATTERNS, polygon], on_progress=progress.append)
    assert result.completed and progress[-1].step == progress[-1].total == 100
    assert [p.step for p in progress] == sorted(p.step for p in progress)
    names = sdk.names()
    assert names.index("patterning.clear_patterns") < names.index("patterning.create_rectangle")
    assert names.index("patterning.create_polygon") < names.index("patterning.start")
    rect, line, circle, poly = sdk.STATE.patterns
    assert rect.params == {"center_x": 1e-6, "center_y": -2e-6, "width": 4e-6, "height": 3e-6, "depth": 5e-7}
    assert rect.rotation == 0.1
    assert line.params == {"start_x": 0.0, "start_y": 0.0, "end_x": 2e-6, "end_y": 1e-6, "depth": 1e-7}
    assert (circle.params["outer_diameter"], circle.params["inner_diameter"]) == (2e-6, 0.0)
    assert poly.params == {"vertices": [[0.0, 0.0], [1e-6, 0.0], [0.0, 1e-6]], "depth": 1e-7}


def test_tescan_milling_builds_a_drawbeam_layer(tescan):
    m, sdk = tescan
    with pytest.raises(NotSupportedError, match="preset"):  # the FIB runs at 300 pA; 2 nA needs a preset
        m.setup_milling(MillingSettings(current=2e-9, hfw=50e-6))
    assert not [n for n in sdk.names() if "Set" in n or n.startswith("DrawBeam")]
    settings = MillingSettings(current=300e-12, voltage=30e3, hfw=50e-6)
    m.setup_milling(settings)
    assert sdk.calls("FIB.Optics.SetViewfield")[-1].args == (pytest.approx(0.05),)
    with pytest.raises(NotSupportedError, match="polygon"):
        m.run_milling([PolygonPattern(((0, 0), (1e-6, 0), (0, 1e-6)), 1e-7)])
    assert not [n for n in sdk.names() if n.startswith("DrawBeam")]

    progress = []
    result = m.run_milling(PATTERNS, on_progress=progress.append)
    assert result.completed and [p.step for p in progress] == [25, 50, 75, 100]
    etching = sdk.calls("DrawBeam.IEtching")[0].kwargs
    assert (etching["writeFieldSize"], etching["beamCurrent"], etching["parallel"]) == (50e-6, 300e-12, False)
    rect = sdk.calls("layer.addRectangleFilled")[0].kwargs
    assert {k: rect[k] for k in ("CenterX", "CenterY", "Width", "Height", "Depth", "DepthUnit")} == {
        "CenterX": 1e-6,
        "CenterY": -2e-6,
        "Width": 4e-6,
        "Height": 3e-6,
        "Depth": 5e-7,
        "DepthUnit": "m",
    }
    assert rect["Angle"] == pytest.approx(math.degrees(0.1))
    assert sdk.calls("layer.addLine")[0].kwargs["EndY"] == 1e-6
    assert sdk.calls("layer.addAnnulusFilled")[0].kwargs["RadiusA"] == 1e-6
    names = sdk.names()
    order = [names.index(f"DrawBeam.{n}") for n in ("LoadLayer", "Start", "UnloadLayer")]
    assert order == sorted(order)


def test_stopping_a_run_stops_the_instrument(rig):
    vendor, m, sdk = rig
    m.setup_milling(MillingSettings(current=300e-12, voltage=30e3, hfw=50e-6))
    stop = threading.Event()
    result = m.run_milling(PATTERNS[:1], on_progress=lambda p: stop.set(), stop=stop)
    assert not result.completed and result.steps_done < result.steps_total
    assert ("patterning.stop" if vendor == "thermofisher" else "DrawBeam.Stop") in sdk.names()
    sdk.CALLS.clear()
    assert m.run_milling([]).completed and sdk.CALLS == []  # nothing to mill, nothing sent


@pytest.mark.parametrize("kind", [ValueError, KeyboardInterrupt])
def test_a_failed_stop_after_an_error_keeps_that_error_and_tells_of_the_stop(rig, kind):
    vendor, m, sdk = rig
    m.setup_milling(MillingSettings(current=300e-12, voltage=30e3, hfw=50e-6))
    stop_call = "patterning.stop" if vendor == "thermofisher" else "DrawBeam.Stop"
    sdk.fail_next(stop_call, RuntimeError("stop refused"))
    error = kind("bad callback")

    def fail(progress):
        raise error

    with pytest.raises(BaseException) as e:
        m.run_milling(PATTERNS[:1], on_progress=fail)
    assert stop_call in sdk.names()  # it tried to stop
    assert (e.value if kind is KeyboardInterrupt else e.value.__cause__) is error  # not the stop's error
    assert "stop refused" in error.__notes__[0]
    if kind is ValueError:  # wrapped by the operation, which says both
        assert isinstance(e.value, MicroscopeError) and "stop refused" in str(e.value)
        assert "bad callback" in m.events.records[-1]["error"]["message"]
    stopped = next(r for r in m.events if r["op"] == "stop_milling")
    assert not stopped["ok"] and "stop refused" in stopped["error"]["message"]


def test_a_failed_stop_after_an_sdk_error_keeps_the_sdk_error(thermo):
    m, sdk = thermo
    m.setup_milling(MillingSettings(current=300e-12, voltage=30e3, hfw=50e-6))
    sdk.fail_next("patterning.state", RuntimeError("server busy"))
    sdk.fail_next("patterning.stop", RuntimeError("stop refused"))
    with pytest.raises(MicroscopeError, match="server busy.*stop refused") as e:
        m.run_milling(PATTERNS[:1])
    assert "read the milling state" in str(e.value)


# -- manipulator ---------------------------------------------------------------------------------


def test_thermofisher_manipulator_and_tescan_refusal(fake_sdks):
    m, sdk = _open("thermofisher")
    assert m.insert_manipulator().inserted and "specimen.manipulator.insert" in sdk.names()
    moved = m.move_manipulator_relative(1e-6, 2e-6, -1e-6)
    delta = sdk.calls("specimen.manipulator.relative_move")[0].args[0]
    assert (delta.x, delta.y, delta.z) == (1e-6, 2e-6, -1e-6)
    assert (moved.x, moved.y, moved.z) == (1e-6, 2e-6, -1e-6)
    assert not m.retract_manipulator().inserted
    assert m.get_state().manipulator is not None

    sdk.reset()
    sdk.STATE.has_needle = False
    m = connect({"manufacturer": "ThermoFisher"})
    assert m.get_state().manipulator is None
    with pytest.raises(NotSupportedError, match="no manipulator"):
        m.insert_manipulator()

    m, sdk = _open("tescan")
    with pytest.raises(NotSupportedError, match="manipulator"):
        m.insert_manipulator()
    assert sdk.CALLS == []
    ion = m.get_beam_settings("ion")
    sdk.CALLS.clear()
    with pytest.raises(NotSupportedError, match="voltage.*preset"):
        m.set_beam_settings(dataclasses.replace(ion, voltage=16e3))
    assert not [c for c in sdk.CALLS if ".Set" in c.name or c.name.endswith((".On", ".Off"))]
