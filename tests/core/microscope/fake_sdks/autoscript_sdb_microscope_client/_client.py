"""``SdbMicroscopeClient`` and the sub-objects the adapter touches; every access is recorded."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from ._fake import STATE, ApplicationServerException, record
from .enumerations import ManipulatorState, PatterningState, RetractableDeviceState
from .structures import AdornedImage, ManipulatorPosition, Point, StagePosition


class _Value:
    """An AutoScript setting: reading or writing ``.value`` is a remote call."""

    def __init__(self, path: str, get: Callable[[], Any], put: Callable[[Any], None]) -> None:
        self._path, self._get, self._put = path, get, put

    @property
    def value(self) -> Any:
        record(f"{self._path}.value")
        return self._get()

    @value.setter
    def value(self, v: Any) -> None:
        record(f"{self._path}.value=", v)
        self._put(v)


def _setting(path: str, store: dict, key: str, to_sdk=lambda v: v, from_sdk=lambda v: v) -> _Value:
    def put(v: Any) -> None:
        store[key] = from_sdk(v)

    return _Value(path, lambda: to_sdk(store[key]), put)


class _Beam:
    def __init__(self, name: str) -> None:
        s, p = STATE.beams[name], f"beams.{name}"
        self._p, self._s = p, s
        self.high_voltage = _setting(f"{p}.high_voltage", s, "hv")
        self.beam_current = _setting(f"{p}.beam_current", s, "current")
        self.horizontal_field_width = _setting(
            f"{p}.horizontal_field_width", s, "hfw", from_sdk=lambda v: min(float(v), s["max_hfw"])
        )
        self.working_distance = _setting(f"{p}.working_distance", s, "wd")
        self.beam_shift = _setting(
            f"{p}.beam_shift", s, "shift", lambda v: Point(*v), lambda pt: (pt.x, pt.y)
        )
        self.stigmator = _setting(f"{p}.stigmator", s, "stig", lambda v: Point(*v), lambda pt: (pt.x, pt.y))
        self.scanning = SimpleNamespace(
            rotation=_setting(f"{p}.scanning.rotation", s, "rotation"),
            dwell_time=_setting(f"{p}.scanning.dwell_time", s, "dwell"),
            resolution=_setting(f"{p}.scanning.resolution", s, "resolution"),
        )

    @property
    def is_on(self) -> bool:
        record(f"{self._p}.is_on")
        return self._s["on"]

    def turn_on(self) -> None:
        record(f"{self._p}.turn_on")
        self._s["on"] = True

    def turn_off(self) -> None:
        record(f"{self._p}.turn_off")
        self._s["on"] = False


class _Imaging:
    def set_active_view(self, view: int) -> None:
        record("imaging.set_active_view", view)
        STATE.view = view

    def grab_frame(self, settings) -> AdornedImage:
        record("imaging.grab_frame", settings)
        beam = STATE.beams["electron_beam" if STATE.view == 1 else "ion_beam"]
        w, h = (int(v) for v in settings.resolution.split("x"))
        data = np.full((h, w), 40 * STATE.view, np.uint8)
        pixel = SimpleNamespace(x=beam["hfw"] / w, y=beam["hfw"] / w)
        return AdornedImage(data, SimpleNamespace(binary_result=SimpleNamespace(pixel_size=pixel)))


class _Stage:
    @property
    def current_position(self) -> StagePosition:
        record("specimen.stage.current_position")
        return StagePosition(**STATE.stage, coordinate_system=STATE.stage_cs)

    def set_default_coordinate_system(self, system: str) -> None:
        record("specimen.stage.set_default_coordinate_system", system)
        STATE.stage_cs = system

    def absolute_move(self, position: StagePosition, settings=None) -> None:
        record("specimen.stage.absolute_move", position, settings)
        for axis in "xyzrt":
            if getattr(position, axis) is not None:
                STATE.stage[axis] = getattr(position, axis)


class _Manipulator:
    @property
    def state(self) -> str:
        record("specimen.manipulator.state")
        if not STATE.has_needle:
            raise ApplicationServerException("Manipulator is not installed.")
        return ManipulatorState.INSERTED if STATE.inserted else ManipulatorState.RETRACTED

    @property
    def current_position(self) -> ManipulatorPosition:
        record("specimen.manipulator.current_position")
        return ManipulatorPosition(**STATE.needle)

    def set_default_coordinate_system(self, system: str) -> None:
        record("specimen.manipulator.set_default_coordinate_system", system)

    def insert(self, position=None) -> None:
        record("specimen.manipulator.insert", *([] if position is None else [position]))
        STATE.inserted = True

    def retract(self) -> None:
        record("specimen.manipulator.retract")
        STATE.inserted = False

    def relative_move(self, delta: ManipulatorPosition) -> None:
        record("specimen.manipulator.relative_move", delta)
        for axis in "xyz":
            STATE.needle[axis] += getattr(delta, axis)


class _Pattern:
    """A created pattern; setting an attribute (``rotation``) is a remote call."""

    def __init__(self, kind: str, **params: Any) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "rotation", 0.0)

    def __setattr__(self, name: str, value: Any) -> None:
        record(f"pattern.{name}=", value)
        object.__setattr__(self, name, value)


class _Patterning:
    def _create(self, kind: str, *args: Any, **kwargs: Any) -> _Pattern:
        record(f"patterning.create_{kind}", *args, **kwargs)
        params = dict(kwargs)
        if args:
            params["vertices"] = args[0]
        pattern = _Pattern(kind, **params)
        STATE.patterns.append(pattern)
        return pattern

    def create_rectangle(self, center_x, center_y, width, height, depth) -> _Pattern:
        return self._create(
            "rectangle", center_x=center_x, center_y=center_y, width=width, height=height, depth=depth
        )

    def create_line(self, start_x, start_y, end_x, end_y, depth) -> _Pattern:
        return self._create("line", start_x=start_x, start_y=start_y, end_x=end_x, end_y=end_y, depth=depth)

    def create_circle(self, center_x, center_y, outer_diameter, inner_diameter, depth) -> _Pattern:
        return self._create(
            "circle",
            center_x=center_x,
            center_y=center_y,
            outer_diameter=outer_diameter,
            inner_diameter=inner_diameter,
            depth=depth,
        )

    def create_polygon(self, vertices, depth) -> _Pattern:
        return self._create("polygon", vertices, depth=depth)

    def set_default_beam_type(self, beam_index: int) -> None:
        record("patterning.set_default_beam_type", beam_index)
        STATE.pattern_beam = beam_index

    def set_default_application_file(self, name: str) -> None:
        record("patterning.set_default_application_file", name)
        STATE.application_file = name

    @property
    def mode(self) -> str:
        record("patterning.mode")
        return STATE.mode

    @mode.setter
    def mode(self, value: str) -> None:
        record("patterning.mode=", value)
        STATE.mode = value

    def clear_patterns(self) -> None:
        record("patterning.clear_patterns")
        STATE.patterns.clear()

    def start(self) -> None:
        record("patterning.start")
        if not STATE.patterns:
            raise ApplicationServerException("There are no patterns to run.")
        STATE.polls_left = STATE.run_polls

    def stop(self) -> None:
        record("patterning.stop")
        STATE.polls_left = 0

    @property
    def state(self) -> str:
        record("patterning.state")
        if STATE.polls_left > 0:
            STATE.polls_left -= 1
            return PatterningState.RUNNING
        return PatterningState.IDLE


class _GisPort:
    """``gas.get_gis_port(name)``: a GIS port; the heater warms it at once."""

    def __init__(self, name: str) -> None:
        self._n, self._p = name, f"gis[{name}]"

    @property
    def _s(self) -> dict:
        return STATE.gis[self._n]

    @property
    def state(self) -> str:
        record(f"{self._p}.state")
        return RetractableDeviceState.INSERTED if self._s["inserted"] else RetractableDeviceState.RETRACTED

    def insert(self, *position: Any) -> None:
        record(f"{self._p}.insert", *position)
        self._s["inserted"] = True

    def retract(self) -> None:
        record(f"{self._p}.retract")
        self._s["inserted"] = False

    def open(self) -> None:
        record(f"{self._p}.open")
        if not self._s["inserted"]:
            raise ApplicationServerException("GIS is not inserted.")
        self._s["open"] = True

    def close(self) -> None:
        record(f"{self._p}.close")
        self._s["open"] = False

    def turn_heater_on(self) -> None:
        record(f"{self._p}.turn_heater_on")
        self._s["heater"] = True

    def turn_heater_off(self) -> None:
        record(f"{self._p}.turn_heater_off")
        self._s["heater"] = False

    def get_temperature(self) -> float:
        record(f"{self._p}.get_temperature")
        return self._s["heated_K" if self._s["heater"] else "room_K"]


class _Gas:
    def list_all_gis_ports(self) -> list[str]:
        record("gas.list_all_gis_ports")
        return list(STATE.gis)

    def get_gis_port(self, name: str) -> _GisPort:
        record("gas.get_gis_port", name)
        if name not in STATE.gis:
            raise ApplicationServerException(f"GIS port {name} not found.")
        return _GisPort(name)


class _Vacuum:
    @property
    def chamber_state(self) -> str:
        record("vacuum.chamber_state")
        return STATE.chamber_state

    @property
    def chamber_pressure(self) -> _Value:
        return _Value("vacuum.chamber_pressure", lambda: STATE.chamber_pressure, lambda v: None)


class _SputterCoater:
    def __init__(self) -> None:
        self.current = _setting("specimen.sputter_coater.current", STATE.coater, "current")

    def prepare(self) -> None:
        record("specimen.sputter_coater.prepare")
        STATE.coater["prepared"] = True

    def run(self, seconds: float) -> None:
        record("specimen.sputter_coater.run", seconds)
        STATE.coater["ran_s"] += seconds

    def recover(self) -> None:
        record("specimen.sputter_coater.recover")
        STATE.coater["prepared"] = False


class _AutoFunctions:
    def run_auto_cb(self) -> None:
        record("auto_functions.run_auto_cb")


class SdbMicroscopeClient:
    def __init__(self) -> None:
        record("SdbMicroscopeClient")
        self.imaging = _Imaging()
        self.beams = SimpleNamespace(electron_beam=_Beam("electron_beam"), ion_beam=_Beam("ion_beam"))
        self.specimen = SimpleNamespace(stage=_Stage(), manipulator=_Manipulator())
        if STATE.has_coater:
            self.specimen.sputter_coater = _SputterCoater()
        self.patterning = _Patterning()
        self.auto_functions = _AutoFunctions()
        self.gas = _Gas()
        self.vacuum = _Vacuum()

    def connect(self, host: str, port: int | None = None) -> None:
        record("connect", host, *([] if port is None else [port]))

    def disconnect(self) -> None:
        record("disconnect")
