"""event.yaml as one schema: the writer's bytes, unknown keys kept, one clear error per bad file."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from napari_fibsem.core.events.event_record import Box, EventRecord, EventRecordError, read_event_record


def test_round_trip_keeps_dates_and_keys_a_newer_version_wrote(tmp_path):
    record = EventRecord(id="e1", label="division", source="day1/cell.tif", frames=[2, 9],
                         box=Box(y0=0, x0=4, y1=32, x1=36), points=[(3, 10.5, 20.0)], sigma=2.0,
                         metadata={"date": dt.date(2024, 1, 2), "fps": 2.0})  # fmt: skip
    data = yaml.safe_load(record.to_yaml())
    assert data["points"] == [[3, 10.5, 20.0]] and data["metadata"]["date"] == dt.date(2024, 1, 2)
    data["reviewed_by"] = "ana"  # a key this version does not know
    (tmp_path / "event.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    again = read_event_record(tmp_path / "event.yaml")
    assert again.points == [(3, 10.5, 20.0)] and again.box == Box(y0=0, x0=4, y1=32, x1=36)
    assert yaml.safe_load(again.to_yaml()) == data


@pytest.mark.parametrize(
    ("text", "message"),
    [("id: e1\n", "not an event record (needs id and label)"),
     ("id: e1\nlabel: x\npoints: [[1, 2]]\n", "not a valid event record (points.0"),
     ("id: [e1\n", "cannot read the event record")],
)  # fmt: skip
def test_bad_files_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "event.yaml"
    path.write_text(text)
    with pytest.raises(EventRecordError) as e:
        read_event_record(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
