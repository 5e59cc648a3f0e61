"""``Automation`` and the sub-objects the adapter touches; every call is recorded."""

from __future__ import annotations

from enum import Enum
from types import SimpleNamespace
from typing import Any

import numpy as np

from ._fake import STATE, record
from .DrawBeam import Status


class HVBeamStatus(Enum):
    BeamOff = 0
    BeamOn = 1


class _Optics:
    def __init__(self, col: str, has_wd: bool) -> None:
        self._c, self._has_wd = col, has_wd

    @property
    def _s(self) -> dict:
        return STATE.columns[self._c]

    def GetViewfield(self) -> float:
        record(f"{self._c}.Optics.GetViewfield")
        return self._s["viewfield_mm"]

    def SetViewfield(self, mm: float) -> None:
        record(f"{self._c}.Optics.SetViewfield", mm)
        self._s["viewfield_mm"] = min(float(mm), self._s["max_viewfield_mm"])

    def GetImageShift(self) -> tuple[float, float]:
        record(f"{self._c}.Optics.GetImageShift")
        return self._s["shift_mm"]

    def SetImageShift(self, x_mm: float, y_mm: float) -> None:
        record(f"{self._c}.Optics.SetImageShift", x_mm, y_mm)
        self._s["shift_mm"] = (x_mm, y_mm)

    def GetImageRotation(self) -> float:
        record(f"{self._c}.Optics.GetImageRotation")
        return self._s["rotation_deg"]

    def SetImageRotation(self, deg: float) -> None:
        record(f"{self._c}.Optics.SetImageRotation", deg)
        self._s["rotation_deg"] = deg

    def __getattr__(self, name: str) -> Any:
        if name in ("GetWD", "SetWD") and self._has_wd:
            return getattr(self, f"_{name}")
        raise AttributeError(f"{self._c}.Optics has no {name}")

    def _GetWD(self) -> float:
        record(f"{self._c}.Optics.GetWD")
        return self._s["wd_mm"]

    def _SetWD(self, mm: float) -> None:
        record(f"{self._c}.Optics.SetWD", mm)
        self._s["wd_mm"] = mm


class _Beam:
    Status = HVBeamStatus

    def __init__(self, col: str) -> None:
        self._c = col

    @property
    def _s(self) -> dict:
        return STATE.columns[self._c]

    def GetVoltage(self) -> float:
        record(f"{self._c}.Beam.GetVoltage")
        return self._s["hv"]

    def GetStatus(self) -> HVBeamStatus:
        record(f"{self._c}.Beam.GetStatus")
        return HVBeamStatus.BeamOn if self._s["on"] else HVBeamStatus.BeamOff

    def On(self) -> None:
        record(f"{self._c}.Beam.On")
        self._s["on"] = True

    def Off(self) -> None:
        record(f"{self._c}.Beam.Off")
        self._s["on"] = False


class _SemBeam(_Beam):
    def SetVoltage(self, volts: float) -> None:
        record("SEM.Beam.SetVoltage", volts)
        self._s["hv"] = volts

    def GetCurrent(self) -> float:
        record("SEM.Beam.GetCurrent")
        return self._s["current_pA"]

    def SetCurrent(self, pa: float) -> None:
        record("SEM.Beam.SetCurrent", pa)
        self._s["current_pA"] = pa


class _FibBeam(_Beam):
    def ReadProbeCurrent(self) -> float:
        record("FIB.Beam.ReadProbeCurrent")
        return self._s["current_pA"]


class _Scan:
    def __init__(self, col: str) -> None:
        self._c = col

    def AcquireImageFromChannel(self, channel: int, width: int, height: int, dwell_ns: float):
        record(f"{self._c}.Scan.AcquireImageFromChannel", channel, width, height, dwell_ns)
        pixel_m = STATE.columns[self._c]["viewfield_mm"] / 1e3 / width
        image = np.full((height, width), 50 if self._c == "SEM" else 150, np.uint8)
        return SimpleNamespace(Image=image, Header={"MAIN": {"PixelSizeX": repr(pixel_m)}, self._c: {}})


class _Detector:
    def __init__(self, col: str) -> None:
        self._c = col

    def Get(self, Channel: int):
        record(f"{self._c}.Detector.Get", Channel=Channel)
        return SimpleNamespace(name="E-T" if self._c == "SEM" else "SE", index=0)

    def AutoSignal(self, Detector) -> None:
        record(f"{self._c}.Detector.AutoSignal", Detector=Detector)


class _Stage:
    def GetPosition(self) -> tuple[float, ...]:
        record("Stage.GetPosition")
        return tuple(STATE.stage)

    def MoveTo(self, x=None, y=None, z=None, rot=None, tiltx=None, tilty=None) -> None:
        record("Stage.MoveTo", x=x, y=y, z=z, rot=rot, tiltx=tiltx, tilty=tilty)
        for i, v in enumerate((x, y, z, rot, tiltx, tilty)):
            if v is not None:
                STATE.stage[i] = float(v)


class _Layer:
    def __init__(self, name: str, settings) -> None:
        self.name, self.settings, self.shapes = name, settings, []

    def _add(self, kind: str, **kwargs: Any) -> None:
        record(f"layer.{kind}", **kwargs)
        self.shapes.append((kind, kwargs))

    def addRectangleFilled(self, **kwargs: Any) -> None:
        self._add("addRectangleFilled", **kwargs)

    def addLine(self, **kwargs: Any) -> None:
        self._add("addLine", **kwargs)

    def addAnnulusFilled(self, **kwargs: Any) -> None:
        self._add("addAnnulusFilled", **kwargs)


class _DrawBeamApi:
    def Layer(self, name: str, settings) -> _Layer:
        record("DrawBeam.Layer", name, settings)
        return _Layer(name, settings)

    def LoadLayer(self, layer: _Layer) -> None:
        record("DrawBeam.LoadLayer", layer)
        db = STATE.drawbeam
        db.layer, db.status = layer, Status.ProjectLoadedExpositionIdle

    def UnloadLayer(self) -> None:
        record("DrawBeam.UnloadLayer")
        db = STATE.drawbeam
        db.layer, db.status = None, Status.ProjectNotLoaded

    def Start(self) -> None:
        record("DrawBeam.Start")
        db = STATE.drawbeam
        if db.layer is None:
            raise RuntimeError("DrawBeam: no layer loaded")
        db.status, db.total, db.elapsed = Status.ProjectLoadedExpositionInProgress, STATE.run_s, 0.0

    def Stop(self) -> None:
        record("DrawBeam.Stop")
        STATE.drawbeam.status = Status.ProjectLoadedExpositionIdle

    def GetStatus(self) -> tuple[Status, float, float]:
        record("DrawBeam.GetStatus")
        db = STATE.drawbeam
        if db.status is Status.ProjectLoadedExpositionInProgress:
            db.elapsed += 1.0
            if db.elapsed >= db.total:
                db.status = Status.ProjectLoadedExpositionIdle
        return db.status, db.total, db.elapsed


class _GIS:
    """``Automation.GIS``: the gas injection lines; heating is ready at once."""

    class Position(Enum):
        Home = 0
        Working = 1

    def _s(self, line) -> dict:
        if line.name not in STATE.gis:
            raise RuntimeError(f"GIS: no line {line.name}")
        return STATE.gis[line.name]

    def Enum(self) -> list[SimpleNamespace]:
        record("GIS.Enum")
        return [SimpleNamespace(name=name, index=i) for i, name in enumerate(STATE.gis)]

    def MoveTo(self, line, position: _GIS.Position) -> None:
        record("GIS.MoveTo", line.name, position)
        if not isinstance(position, _GIS.Position):
            raise TypeError(f"GIS.MoveTo: position must be a GIS.Position, not {position!r}")
        self._s(line)["position"] = position.name

    def PrepareTemperature(self, line, on: bool) -> None:
        record("GIS.PrepareTemperature", line.name, on)
        self._s(line)["heating"] = on

    def WaitForTemperatureReady(self, line) -> None:
        record("GIS.WaitForTemperatureReady", line.name)
        if not self._s(line)["heating"]:
            raise RuntimeError("GIS: heating is off")

    def OpenValve(self, line) -> None:
        record("GIS.OpenValve", line.name)
        if self._s(line)["position"] != "Working":
            raise RuntimeError("GIS: not in the working position")
        self._s(line)["open"] = True

    def CloseValve(self, line) -> None:
        record("GIS.CloseValve", line.name)
        self._s(line)["open"] = False


class _Chamber:
    def GetStatus(self) -> int:
        record("Chamber.GetStatus")
        return STATE.vacuum_status

    def GetPressure(self, gauge: int) -> float:
        record("Chamber.GetPressure", gauge)
        return STATE.pressure_pa


class Automation:
    GIS = _GIS

    def __init__(self, ip: str, port: int = 8300) -> None:
        record("Automation", ip, port)
        self.SEM = SimpleNamespace(
            Optics=_Optics("SEM", True), Beam=_SemBeam("SEM"), Scan=_Scan("SEM"), Detector=_Detector("SEM")
        )
        self.FIB = SimpleNamespace(
            Optics=_Optics("FIB", False), Beam=_FibBeam("FIB"), Scan=_Scan("FIB"), Detector=_Detector("FIB")
        )
        self.Stage = _Stage()
        self.DrawBeam = _DrawBeamApi()
        self.GIS = _GIS()
        self.Chamber = _Chamber()

    def Disconnect(self) -> None:
        record("Disconnect")
