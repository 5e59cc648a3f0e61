"""Gas injection (GIS), sputter coating and chamber readings: the safe sequences on the simulator
(pumped chamber first, unknown ports refused, the valve always closed and the GIS retracted) and
the vendor adapters against the fake SDKs in ``fake_sdks/`` (call order, units, errors)."""

from __future__ import annotations

import importlib
import json
import sys
import threading
from pathlib import Path

import pytest

from napari_fibsem.core.microscope import (
    ConnectionLostError,
    DepositionResult,
    GasInjectionSettings,
    GasPort,
    MicroscopeError,
    NotSupportedError,
    RefusedError,
    SputterSettings,
    connect,
    from_dict,
    parse_config,
    read_events,
    to_dict,
)
from napari_fibsem.core.microscope.hooks import InstrumentHooks
from napari_fibsem.core.microscope.simulator import SimulatedMicroscope

GIS_OPS = ("gis_insert", "gis_heat", "gis_ready", "gis_open", "gis_close", "gis_retract", "gis_heater_off")


def make_sim(tmp_path, **simulator):
    return connect({"simulator": {"seed": 0, **simulator}}, event_log=tmp_path / "events.jsonl")


@pytest.fixture
def sim(tmp_path):
    return make_sim(tmp_path)


def steps(m, prefix: str = "gis_") -> list[dict]:
    """The step records of the sequences (not those of the public operations)."""
    return [r for r in m.events if r["op"].startswith(prefix) and r["op"] != "sputter_coat"]


def last(m, op: str) -> dict:
    return next(r for r in reversed(m.events.records) if r["op"] == op)


def port(m, name: str) -> GasPort:
    return next(p for p in m.gas_ports() if p.name == name)


# -- settings and readings ------------------------------------------------------------------------


def test_settings_validate_and_round_trip():
    s = GasInjectionSettings("C dep", duration=12.5, temperature=320.0, heat_timeout=5)
    assert from_dict(GasInjectionSettings, json.loads(json.dumps(to_dict(s)))) == s
    assert from_dict(SputterSettings, to_dict(SputterSettings(20, current=0.01))) == SputterSettings(
        20, current=0.01
    )
    with pytest.raises(ValueError, match="heat=True"):
        GasInjectionSettings(heat=False, temperature=300.0)
    with pytest.raises(ValueError, match="duration"):
        GasInjectionSettings(duration=-1)
    with pytest.raises(ValueError, match="current"):
        SputterSettings(current=0)


def test_ports_and_chamber_readings(tmp_path, sim):
    assert sim.gas_ports() == [
        GasPort("Pt dep", inserted=False, open=False, temperature=pytest.approx(295.15), ready=False),
        GasPort("C dep", inserted=False, open=False, temperature=pytest.approx(295.15), ready=False),
    ]
    chamber = sim.get_chamber_state()
    assert (chamber.vacuum, chamber.pressure, chamber.temperature) == ("pumped", pytest.approx(1e-4), None)
    cryo = make_sim(tmp_path, cryo=True, gas_ports=["W dep"])
    assert [p.name for p in cryo.gas_ports()] == ["W dep"]
    assert cryo.get_chamber_state().temperature_celsius == pytest.approx(-180.0)
    sim.set_vacuum("vented")
    assert sim.get_chamber_state().pressure == pytest.approx(1e5)
    with pytest.raises(ValueError, match="pumped"):
        sim.set_vacuum("leaky")


def test_an_instrument_without_gis_or_coater_says_so(tmp_path):
    class Bare(SimulatedMicroscope):
        _gas_port_names = InstrumentHooks._gas_port_names
        _prepare_sputter = InstrumentHooks._prepare_sputter

    m = Bare(parse_config({"simulator": {"seed": 0}}))
    m.connect()
    with pytest.raises(NotSupportedError, match="Bare has no gas injection system"):
        m.gas_ports()
    with pytest.raises(NotSupportedError, match="no gas injection"):
        m.run_gas_injection(GasInjectionSettings(duration=0))
    with pytest.raises(NotSupportedError, match="Bare has no sputter coater"):
        m.sputter_coat(SputterSettings(0))
    assert make_sim(tmp_path, gas_ports=[]).gas_ports() == []


# -- gas injection on the simulator ---------------------------------------------------------------


def test_injection_inserts_heats_opens_for_the_duration_closes_and_retracts(tmp_path, sim):
    progress = []
    result = sim.run_gas_injection(GasInjectionSettings("Pt dep", duration=0.05), on_progress=progress.append)
    assert isinstance(result, DepositionResult) and result.completed and result.stopped_in is None
    assert result.deposited == pytest.approx(0.05) and result.requested == 0.05
    assert sim.deposited("Pt dep") >= 0.05  # the valve was open at least that long
    assert port(sim, "Pt dep") == GasPort("Pt dep", False, False, pytest.approx(295.15), False)  # heater off
    assert [p.phase for p in progress][:2] == ["insert", "deposit"]
    records = steps(sim)
    assert [r["op"] for r in records] == list(GIS_OPS)
    assert all(r["ok"] and r["args"] == {"port": "Pt dep"} for r in records)
    assert {r.get("reason") for r in records[4:]} == {"completed"}
    on_disk = read_events(tmp_path / "events.jsonl")  # the operation itself, as JSON on disk
    done = next(r for r in on_disk if r["op"] == "run_gas_injection")
    assert done["op"] == "run_gas_injection" and done["ok"] and done["args"]["settings"]["port"] == "Pt dep"
    assert done["result"]["completed"]


def test_an_inserted_ready_port_is_used_as_it_is(sim):
    sim.insert_gis("C dep")
    result = sim.run_gas_injection(GasInjectionSettings("C dep", duration=0, heat=False))
    assert result.completed
    assert [r["op"] for r in steps(sim)] == ["gis_open", "gis_close", "gis_retract"]
    assert not port(sim, "C dep").inserted


def test_stop_while_depositing_closes_and_retracts(sim):
    stop = threading.Event()

    def on_progress(p):
        if p.phase == "deposit":
            stop.set()

    result = sim.run_gas_injection(GasInjectionSettings(duration=30), on_progress=on_progress, stop=stop)
    assert not result.completed and result.stopped_in == "deposit" and result.deposited < 1
    assert result.elapsed < 5
    p = port(sim, "Pt dep")
    assert not p.open and not p.inserted
    closing = steps(sim)[-3:]
    assert [(r["op"], r["reason"], r["ok"]) for r in closing] == [
        ("gis_close", "stopped", True),
        ("gis_retract", "stopped", True),
        ("gis_heater_off", "stopped", True),
    ]
    assert last(sim, "run_gas_injection")["result"]["stopped_in"] == "deposit"


def test_stop_while_heating_never_opens_the_valve(tmp_path):
    sim = make_sim(tmp_path, delays={"gis_heat_s": 60})
    stop = threading.Event()
    result = sim.run_gas_injection(
        GasInjectionSettings(duration=1), on_progress=lambda p: p.phase == "heat" and stop.set(), stop=stop
    )
    assert result.stopped_in == "heat" and result.deposited == 0
    assert "gis_open" not in [r["op"] for r in steps(sim)]
    assert not port(sim, "Pt dep").inserted and sim.deposited("Pt dep") == 0
    stop.set()  # already set before the start: nothing happens at all
    sim.events.records.clear()
    assert sim.run_gas_injection(GasInjectionSettings(duration=1), stop=stop).stopped_in == "insert"
    assert steps(sim) == []


def test_heating_that_does_not_finish_in_time_is_an_error_and_cleans_up(tmp_path):
    sim = make_sim(tmp_path, delays={"gis_heat_s": 60})
    with pytest.raises(MicroscopeError, match="not ready after 0.05 s.*not opened.*cleanup: gis_close done"):
        sim.run_gas_injection(GasInjectionSettings(duration=1, heat_timeout=0.05))
    assert not port(sim, "Pt dep").inserted and "gis_open" not in [r["op"] for r in steps(sim)]
    fast = make_sim(tmp_path)  # a temperature to wait for, reached at once
    assert fast.run_gas_injection(GasInjectionSettings(duration=0, temperature=310.0)).completed
    ready = next(r for r in steps(fast) if r["op"] == "gis_ready")
    assert ready["temperature"] == pytest.approx(318.15)


def test_a_fault_while_opening_raises_and_the_valve_is_closed_and_the_gis_retracted(sim):
    sim.inject_fault("gis_open")
    with pytest.raises(MicroscopeError, match="injected fault") as e:
        sim.run_gas_injection(GasInjectionSettings(duration=5))
    msg = str(e.value)
    assert "cleanup: gis_close done, gis_retract done, gis_heater_off done" in msg
    assert "state re-read" in msg  # the operation re-read the stage, like every other failure
    p = port(sim, "Pt dep")
    assert not p.open and not p.inserted
    records = steps(sim)
    assert [(r["op"], r["ok"]) for r in records[3:]] == [
        ("gis_open", False),
        ("gis_close", True),
        ("gis_retract", True),
        ("gis_heater_off", True),
    ]
    assert {r["reason"] for r in records[4:]} == {"error"}
    failed = last(sim, "run_gas_injection")
    assert not failed["ok"] and failed["stage_after"] is not None and "injected" in failed["error"]["message"]


def test_a_failing_cleanup_does_not_mask_the_original_error(sim):
    sim.inject_fault("gis_open")
    sim.inject_fault("gis_close")
    with pytest.raises(MicroscopeError) as e:
        sim.run_gas_injection(GasInjectionSettings(duration=5))
    msg = str(e.value)
    assert msg.startswith("the 'Pt dep' GIS valve reports a fault while opening")  # the first error
    assert "gis_close failed (MicroscopeError: the 'Pt dep' GIS valve did not close" in msg
    assert "gis_retract done" in msg and "check the instrument" in msg
    assert not port(sim, "Pt dep").inserted  # retracted although the close failed
    # after a clean run, a cleanup failure is itself the error
    sim.inject_fault("gis_close")
    with pytest.raises(MicroscopeError, match="ended, but its cleanup failed: gis_close failed"):
        sim.run_gas_injection(GasInjectionSettings(duration=0))


def test_an_interrupt_cleans_up_and_propagates(sim):
    def interrupt(p):
        if p.phase == "deposit":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as e:
        sim.run_gas_injection(GasInjectionSettings(duration=5), on_progress=interrupt)
    assert "gis_close done" in e.value.__notes__[0]
    assert not port(sim, "Pt dep").open and not port(sim, "Pt dep").inserted


def test_refused_in_a_vented_chamber_and_for_an_unknown_port(sim):
    sim.set_vacuum("vented")
    with pytest.raises(RefusedError, match="needs a pumped chamber; the chamber is vented at 1e\\+05 Pa"):
        sim.run_gas_injection(GasInjectionSettings(duration=1))
    with pytest.raises(RefusedError, match="pumped chamber"):
        sim.sputter_coat(SputterSettings(1))
    assert steps(sim) == [] and steps(sim, "sputter_") == []
    assert sim.events.records[-1]["stage_after"] is None  # a refusal: nothing to re-read
    sim.set_vacuum("pumped")
    unknown = r"unknown GIS port 'W dep'; this instrument has \['Pt dep', 'C dep'\]"
    with pytest.raises(RefusedError, match=unknown):
        sim.run_gas_injection(GasInjectionSettings("W dep", duration=1))
    with pytest.raises(RefusedError, match=unknown):
        sim.insert_gis("W dep")
    assert steps(sim) == [] and not any(p.inserted for p in sim.gas_ports())


def test_insert_and_retract_one_port(sim):
    assert sim.insert_gis("C dep").inserted
    with pytest.raises(NotSupportedError, match="one insert position"):
        sim.insert_gis("C dep", position="Electron")
    sim._open_gis("C dep")  # left open by someone: retracting closes it first
    retracted = sim.retract_gis("C dep")
    assert not retracted.inserted and not retracted.open


# -- sputter coating on the simulator -----------------------------------------------------------


def test_sputter_coating_prepares_coats_and_always_recovers(tmp_path, sim):
    progress = []
    result = sim.sputter_coat(SputterSettings(0.05, current=0.01), on_progress=progress.append)
    assert result.completed and result.deposited == pytest.approx(0.05) and sim.sputtered_s >= 0.05
    assert [r["op"] for r in steps(sim, "sputter_")] == ["sputter_prepare", "sputter_run", "sputter_recover"]
    assert steps(sim, "sputter_")[-1]["reason"] == "completed"
    assert {p.phase for p in progress} == {"prepare", "coat"}

    stop = threading.Event()
    stopped = sim.sputter_coat(
        SputterSettings(30), on_progress=lambda p: p.phase == "coat" and stop.set(), stop=stop
    )
    assert stopped.stopped_in == "coat" and stopped.deposited < 1
    assert steps(sim, "sputter_")[-1] == {
        **steps(sim, "sputter_")[-1],
        "op": "sputter_recover",
        "reason": "stopped",
    }

    no_coater = make_sim(tmp_path, sputter_coater=False)
    with pytest.raises(NotSupportedError, match="no sputter coater"):
        no_coater.sputter_coat(SputterSettings(1))
    assert steps(no_coater, "sputter_")[-1]["op"] == "sputter_recover"  # recovery runs after a failure too


# -- vendor adapters against the fake SDKs --------------------------------------------------------

FAKES = Path(__file__).parent / "fake_sdks"
SDKS = {"ThermoFisher": "autoscript_sdb_microscope_client", "Tescan": "tescanautomation"}


@pytest.fixture
def vendor(monkeypatch):
    """``open(manufacturer)``: a connected adapter over its fake SDK; nothing of the fakes is left
    in sys.modules afterwards."""

    def forget() -> None:
        for name in list(sys.modules):
            if name.split(".")[0] in (*SDKS.values(), "fake_sdk_recorder"):
                del sys.modules[name]

    def open_(manufacturer: str):
        sdk = importlib.import_module(SDKS[manufacturer])
        sdk.reset()
        m = connect({"manufacturer": manufacturer, "ip_address": "10.0.0.7"})
        sdk.CALLS.clear()
        return m, sdk

    forget()
    monkeypatch.syspath_prepend(str(FAKES))
    yield open_
    forget()


def gis_calls(sdk, prefix: str) -> list[str]:
    return [c.name.removeprefix(prefix) for c in sdk.CALLS if c.name.startswith(prefix)]


def test_thermofisher_injection_calls_in_order_with_kelvin_and_pascal(vendor):
    m, sdk = vendor("ThermoFisher")
    assert [p.name for p in m.gas_ports()] == ["Pt dep", "Water"]
    pt = port(m, "Pt dep")
    assert (pt.inserted, pt.open, pt.temperature) == (False, None, 295.0)  # K as AutoScript reports it
    chamber = m.get_chamber_state()
    assert (chamber.vacuum, chamber.pressure, chamber.raw) == ("pumped", 8e-5, "Pumped")
    sdk.CALLS.clear()
    result = m.run_gas_injection(GasInjectionSettings("Pt dep", duration=0.01, temperature=310.0))
    assert result.completed
    assert sdk.CALLS[0].name == "vacuum.chamber_state"  # the chamber is read first
    actions = [n for n in gis_calls(sdk, "gis[Pt dep].") if n not in ("state", "get_temperature")]
    assert actions == ["insert", "turn_heater_on", "open", "close", "retract", "turn_heater_off"]
    assert sdk.calls("gis[Pt dep].insert")[0].args == ()  # no position: the port's default
    assert sdk.STATE.gis["Pt dep"] == {
        **sdk.STATE.gis["Pt dep"],
        "inserted": False,
        "open": False,
        "heater": False,
    }
    assert port(m, "Pt dep").open is False  # as last commanded

    sdk.CALLS.clear()  # a temperature the port never reaches: timeout, cleanup
    with pytest.raises(
        MicroscopeError, match=r"not ready after 0.01 s \(temperature 318.0 K, wanted 400.0 K\)"
    ):
        m.run_gas_injection(GasInjectionSettings("Water", duration=1, temperature=400.0, heat_timeout=0.01))
    assert "gis[Water].open" not in sdk.names() and not sdk.STATE.gis["Water"]["inserted"]


def test_thermofisher_sdk_failures_are_translated_and_cleaned_up_after(vendor):
    m, sdk = vendor("ThermoFisher")
    sdk.fail_next("gis[Pt dep].open", sdk.ApplicationServerException("valve stuck"))
    with pytest.raises(MicroscopeError, match="open the valve of GIS port 'Pt dep' failed.*valve stuck") as e:
        m.run_gas_injection(GasInjectionSettings(duration=1))
    assert "ApplicationServerException" in str(
        e.value
    ) and "cleanup: gis_close done, gis_retract done" in str(e.value)
    names = sdk.names()
    assert names.index("gis[Pt dep].close") < names.index("gis[Pt dep].retract")
    assert "specimen.stage.current_position" in names[names.index("gis[Pt dep].retract") :]  # re-read
    assert not sdk.STATE.gis["Pt dep"]["inserted"] and m.state_known

    sdk.fail_next("gis[Pt dep].open", RuntimeError("valve stuck"))
    sdk.fail_next("gis[Pt dep].close", ConnectionResetError("connection reset"))
    with pytest.raises(MicroscopeError) as e:
        m.run_gas_injection(GasInjectionSettings(duration=1))
    assert not isinstance(e.value, ConnectionLostError)  # the first error stays the one raised
    assert "valve stuck" in str(e.value) and "gis_close failed (ConnectionLostError" in str(e.value)
    assert not sdk.STATE.gis["Pt dep"]["inserted"]  # the retract was still tried, and worked

    sdk.STATE.chamber_state = "Vented"
    sdk.CALLS.clear()
    with pytest.raises(RefusedError, match="vented"):
        m.run_gas_injection(GasInjectionSettings(duration=1))
    assert sdk.names() == ["vacuum.chamber_state", "vacuum.chamber_pressure.value"]


def test_thermofisher_sputter_coater(vendor):
    m, sdk = vendor("ThermoFisher")
    with pytest.raises(NotSupportedError, match="cannot set the sputter voltage"):
        m.sputter_coat(SputterSettings(10, voltage=1e3))
    assert "specimen.sputter_coater.prepare" not in sdk.names()
    sdk.CALLS.clear()
    assert m.sputter_coat(SputterSettings(10, current=0.015)).completed
    coater = gis_calls(sdk, "specimen.sputter_coater.")
    assert coater == ["prepare", "current.value=", "run", "recover"]
    assert sdk.calls("specimen.sputter_coater.run")[0].args == (10,) and sdk.STATE.coater["current"] == 0.015
    sdk.fail_next("specimen.sputter_coater.run", RuntimeError("target worn"))
    with pytest.raises(MicroscopeError, match="target worn.*sputter_recover done"):
        m.sputter_coat(SputterSettings(10))
    assert sdk.names()[-1] != "specimen.sputter_coater.run" and not sdk.STATE.coater["prepared"]

    sdk.reset()
    sdk.STATE.has_coater = False
    bare = connect({"manufacturer": "ThermoFisher"})
    with pytest.raises(NotSupportedError, match="no sputter coater"):
        bare.sputter_coat(SputterSettings(10))


def test_tescan_injection_calls_in_order_and_its_limits(vendor):
    m, sdk = vendor("Tescan")
    assert m.gas_ports() == [GasPort("Platinum"), GasPort("Carbon")]  # nothing reported until commanded
    assert (m.get_chamber_state().vacuum, m.get_chamber_state().pressure) == ("pumped", 6e-4)
    assert sdk.calls("Chamber.GetPressure")[0].args == (0,)
    sdk.CALLS.clear()
    assert m.run_gas_injection(GasInjectionSettings("Platinum", duration=0.01)).completed
    actions = [(c.name, c.args[1:]) for c in sdk.CALLS if c.name.startswith("GIS.") and c.name != "GIS.Enum"]
    position = sdk.Automation.GIS.Position
    assert actions == [
        ("GIS.MoveTo", (position.Working,)),
        ("GIS.PrepareTemperature", (True,)),
        ("GIS.WaitForTemperatureReady", ()),
        ("GIS.OpenValve", ()),
        ("GIS.CloseValve", ()),
        ("GIS.MoveTo", (position.Home,)),
        ("GIS.PrepareTemperature", (False,)),
    ]
    assert {c.args[0] for c in sdk.CALLS if c.name.startswith("GIS.") and c.args} == {"Platinum"}
    assert port(m, "Platinum") == GasPort(
        "Platinum", inserted=False, open=False, temperature=None, ready=False
    )

    sdk.CALLS.clear()
    with pytest.raises(NotSupportedError, match="does not report the temperature"):
        m.run_gas_injection(GasInjectionSettings("Carbon", duration=1, temperature=320.0))
    with pytest.raises(NotSupportedError, match=r"no position 'Electron'; it has \['Home', 'Working'\]"):
        m.run_gas_injection(GasInjectionSettings("Carbon", duration=1, insert_position="Electron"))
    assert "GIS.OpenValve" not in sdk.names() and sdk.STATE.gis["Carbon"]["position"] == "Home"
    with pytest.raises(NotSupportedError, match="does not drive a sputter coater"):
        m.sputter_coat(SputterSettings(10))

    sdk.fail_next("GIS.OpenValve", RuntimeError("valve fault"))
    with pytest.raises(
        MicroscopeError, match="open the valve of GIS 'Carbon' failed.*valve fault.*gis_retract done"
    ):
        m.run_gas_injection(GasInjectionSettings("Carbon", duration=1))
    assert sdk.STATE.gis["Carbon"] == {"position": "Home", "open": False, "heating": False}

    sdk.STATE.vacuum_status = 3  # vacuum off
    assert m.get_chamber_state().vacuum == "vented"
    with pytest.raises(RefusedError, match="vented"):
        m.run_gas_injection(GasInjectionSettings("Carbon", duration=1))
    sdk.STATE.vacuum_status = 9  # a status the adapter does not know is not taken as pumped
    assert m.get_chamber_state().vacuum == "unknown"
