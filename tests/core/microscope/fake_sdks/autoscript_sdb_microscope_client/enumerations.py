"""The enumeration values the adapter compares against (plain strings, as in AutoScript)."""


class CoordinateSystem:
    RAW = "Raw"
    SPECIMEN = "Specimen"


class ManipulatorCoordinateSystem:
    RAW = "Raw"
    STAGE = "Stage"


class ManipulatorState:
    INSERTED = "Inserted"
    RETRACTED = "Retracted"


class PatterningState:
    IDLE = "Idle"
    RUNNING = "Running"
    PAUSED = "Paused"


class RetractableDeviceState:
    INSERTED = "Inserted"
    RETRACTED = "Retracted"


class VacuumState:
    PUMPED = "Pumped"
    PUMPING = "Pumping"
    VENTED = "Vented"
    VENTING = "Venting"
