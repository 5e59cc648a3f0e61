"""Saved microscope structures keep their on-disk form: dicts written by the hand-made serialiser
(before pydantic did the work) are the expected values here, literally."""

from __future__ import annotations

import json

import pytest
import yaml

from napari_fibsem.core.microscope.structures import (
    BeamSettings,
    BeamType,
    ChamberState,
    CirclePattern,
    ImageSettings,
    LinePattern,
    ManipulatorPosition,
    MicroscopeState,
    MillingProgress,
    MillingResult,
    MillingSettings,
    Pattern,
    PolygonPattern,
    RectanglePattern,
    StagePosition,
    from_dict,
    to_dict,
)

B = BeamType
OBJECTS = {
    "image": ImageSettings((800, 600), 2e-6, 1e-4, "ION_BEAM", False, "a.tif"),
    "stage": StagePosition(1e-3, -2e-3, 3e-4, 0.5, -0.2, "specimen"),
    "beam": BeamSettings(B.ION, 30e3, 1e-9, 1e-4, 16e-3, (1e-6, -2e-6), (0.1, 0.2), 0.3, 2e-6, (768, 512), False),
    "manipulator": ManipulatorPosition(1e-4, 2e-4, 3e-4, True),
    "chamber": ChamberState("pumped", 1e-4, 93.15, "Pumped"),
    "state": MicroscopeState(StagePosition(), BeamSettings(B.ELECTRON, 2e3, 5e-11, 1.5e-4), BeamSettings("ion", 3e4, 1e-9, 8e-5),
                             ManipulatorPosition(inserted=True), "2026-01-02T03:04:05+00:00"),
    "state_no_needle": MicroscopeState(StagePosition(x=1.0), BeamSettings(B.ELECTRON, 2e3, 5e-11, 1.5e-4),
                                       BeamSettings("ion", 3e4, 1e-9, 8e-5), None, "2026-01-02T03:04:05+00:00"),
    "rectangle": RectanglePattern(1e-6, 2e-6, 3e-6, 1e-6, 5e-7, rotation=0.1),
    "line": LinePattern(0, 0, 1e-6, 1e-6, 1e-7),
    "circle": CirclePattern(0, 0, 1e-6, 1e-7),
    "polygon": PolygonPattern(((0, 0), (1e-6, 0), (0, 1e-6)), 1e-7),
    "milling": MillingSettings(1e-9, 30e3, 5e-5, "Pt", "parallel", 3e-10),
    "progress": MillingProgress(3, 10, 1, 2.5, 7.5, "milling", 12.0),
    "result": MillingResult(False, 3, 10, 2.5, None),
}  # fmt: skip

# written by the previous ``to_dict`` (dataclass fields walked by hand) from OBJECTS
OLD_DICTS = {'image': {'resolution': [800, 600],
           'dwell_time': 2e-06,
           'hfw': 0.0001,
           'beam': 'ion',
           'autocontrast': False,
           'save_path': 'a.tif'},
 'stage': {'x': 0.001, 'y': -0.002, 'z': 0.0003, 'r': 0.5, 't': -0.2, 'coordinate_system': 'specimen'},
 'beam': {'beam': 'ion',
          'voltage': 30000.0,
          'current': 1e-09,
          'hfw': 0.0001,
          'working_distance': 0.016,
          'shift': [1e-06, -2e-06],
          'stigmation': [0.1, 0.2],
          'scan_rotation': 0.3,
          'dwell_time': 2e-06,
          'resolution': [768, 512],
          'enabled': False},
 'manipulator': {'x': 0.0001, 'y': 0.0002, 'z': 0.0003, 'inserted': True},
 'chamber': {'vacuum': 'pumped', 'pressure': 0.0001, 'temperature': 93.15, 'raw': 'Pumped'},
 'state': {'stage': {'x': 0.0, 'y': 0.0, 'z': 0.0, 'r': 0.0, 't': 0.0, 'coordinate_system': 'raw'},
           'electron': {'beam': 'electron',
                        'voltage': 2000.0,
                        'current': 5e-11,
                        'hfw': 0.00015,
                        'working_distance': 0.004,
                        'shift': [0.0, 0.0],
                        'stigmation': [0.0, 0.0],
                        'scan_rotation': 0.0,
                        'dwell_time': 1e-06,
                        'resolution': [1536, 1024],
                        'enabled': True},
           'ion': {'beam': 'ion',
                   'voltage': 30000.0,
                   'current': 1e-09,
                   'hfw': 8e-05,
                   'working_distance': 0.004,
                   'shift': [0.0, 0.0],
                   'stigmation': [0.0, 0.0],
                   'scan_rotation': 0.0,
                   'dwell_time': 1e-06,
                   'resolution': [1536, 1024],
                   'enabled': True},
           'manipulator': {'x': 0.0, 'y': 0.0, 'z': 0.0, 'inserted': True},
           'timestamp': '2026-01-02T03:04:05+00:00'},
 'state_no_needle': {'stage': {'x': 1.0, 'y': 0.0, 'z': 0.0, 'r': 0.0, 't': 0.0, 'coordinate_system': 'raw'},
                     'electron': {'beam': 'electron',
                                  'voltage': 2000.0,
                                  'current': 5e-11,
                                  'hfw': 0.00015,
                                  'working_distance': 0.004,
                                  'shift': [0.0, 0.0],
                                  'stigmation': [0.0, 0.0],
                                  'scan_rotation': 0.0,
                                  'dwell_time': 1e-06,
                                  'resolution': [1536, 1024],
                                  'enabled': True},
                     'ion': {'beam': 'ion',
                             'voltage': 30000.0,
                             'current': 1e-09,
                             'hfw': 8e-05,
                             'working_distance': 0.004,
                             'shift': [0.0, 0.0],
                             'stigmation': [0.0, 0.0],
                             'scan_rotation': 0.0,
                             'dwell_time': 1e-06,
                             'resolution': [1536, 1024],
                             'enabled': True},
                     'manipulator': None,
                     'timestamp': '2026-01-02T03:04:05+00:00'},
 'rectangle': {'centre_x': 1e-06,
               'centre_y': 2e-06,
               'width': 3e-06,
               'height': 1e-06,
               'depth': 5e-07,
               'rotation': 0.1,
               'kind': 'rectangle'},
 'line': {'start_x': 0,
          'start_y': 0,
          'end_x': 1e-06,
          'end_y': 1e-06,
          'depth': 1e-07,
          'width': 5e-08,
          'kind': 'line'},
 'circle': {'centre_x': 0, 'centre_y': 0, 'radius': 1e-06, 'depth': 1e-07, 'kind': 'circle'},
 'polygon': {'vertices': [[0.0, 0.0], [1e-06, 0.0], [0.0, 1e-06]], 'depth': 1e-07, 'kind': 'polygon'},
 'milling': {'current': 1e-09,
             'voltage': 30000.0,
             'hfw': 5e-05,
             'application_file': 'Pt',
             'patterning_mode': 'parallel',
             'rate': 3e-10},
 'progress': {'step': 3,
              'total': 10,
              'pattern': 1,
              'elapsed': 2.5,
              'remaining': 7.5,
              'message': 'milling',
              'simulated_s': 12.0},
 'result': {'completed': False, 'steps_done': 3, 'steps_total': 10, 'elapsed': 2.5, 'simulated_s': None}}


@pytest.mark.parametrize("key", list(OBJECTS))
def test_every_structure_saves_as_before_and_loads_back(key):
    obj = OBJECTS[key]
    assert to_dict(obj) == OLD_DICTS[key]
    assert from_dict(type(obj), OLD_DICTS[key]) == obj
    through_files = yaml.safe_load(yaml.safe_dump(json.loads(json.dumps(to_dict(obj)))))
    assert from_dict(type(obj), through_files) == obj


def test_patterns_load_by_their_kind_tag_and_without_it():
    patterns = [OBJECTS[k] for k in ("rectangle", "line", "circle", "polygon")]
    assert from_dict(list[Pattern], [OLD_DICTS[k] for k in ("rectangle", "line", "circle", "polygon")]) == patterns
    untagged = {k: v for k, v in OLD_DICTS["circle"].items() if k != "kind"}
    assert from_dict(list[Pattern], [untagged]) == [OBJECTS["circle"]]


@pytest.mark.parametrize(
    ("cls", "data", "error", "message"),
    [
        (StagePosition, {"x": True}, TypeError, "StagePosition.x: expected a number"),
        (StagePosition, {"x": "1e-3"}, TypeError, "StagePosition.x: expected a number"),
        (ManipulatorPosition, {"inserted": "yes"}, TypeError, "ManipulatorPosition.inserted: expected bool"),
        (ImageSettings, {"resolution": [1.5, 2]}, TypeError, r"ImageSettings.resolution\[0\]: expected an integer"),
        (ImageSettings, {"beam": "xray"}, ValueError, "ImageSettings.beam"),
        (MicroscopeState, {"stage": {"x": 1.0, "zz": 2}}, ValueError, r"MicroscopeState.stage: unknown keys \['zz'\]"),
        (ChamberState, {"vacuum": "leaking"}, ValueError, "ChamberState.vacuum"),
        (list[Pattern], [{**OLD_DICTS["line"], "end_x": "far"}], TypeError, r"\[0\].end_x: expected a number"),
        (ImageSettings, {"dwell_time": -1.0}, ValueError, "dwell_time and hfw must be positive"),
    ],
)
def test_bad_data_names_the_field(cls, data, error, message):
    with pytest.raises(error, match=message):
        from_dict(cls, data)


def test_openfibsem_beam_names_load():
    assert from_dict(ImageSettings, {"beam": "ION_BEAM"}).beam is BeamType.ION
    assert BeamType("ELECTRON") is BeamType.ELECTRON and BeamType.of("ion_beam") is BeamType.ION
