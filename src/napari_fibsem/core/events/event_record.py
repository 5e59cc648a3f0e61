"""``event.yaml``, the record beside each event crop, as one schema (pydantic).

``events extract`` writes it; the catalogues index it and training reads the annotated points and
the source movie from it. Keys this version does not know are kept (``extra="allow"``), so a
record written by a newer version still indexes and round-trips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from napari_fibsem.core.errors import FibsemError

EVENT_FILE = "event.yaml"


class EventRecordError(FibsemError, ValueError):
    """An ``event.yaml`` cannot be read or is not an event record; the message names the file."""


class Box(BaseModel):
    """The crop's place in its movie, in pixels (``y1``/``x1`` exclusive)."""

    y0: int
    x0: int
    y1: int
    x1: int


class EventRecord(BaseModel):
    """One event crop: what it is, where it was cut from and its annotated points (crop coordinates)."""

    model_config = ConfigDict(extra="allow")

    id: str
    label: str
    source: str = ""
    """The movie, relative to the extracted root (``dataset/movie.tif``)."""
    points_file: str | None = None
    frames: list[int] = Field(default_factory=list)
    """First and last frame of the crop in the movie."""
    event_frames: list[int] | None = None
    box: Box | None = None
    points: list[tuple[int, float, float]] = Field(default_factory=list)
    """``(frame, y, x)`` of each annotated point inside the crop."""
    sigma: float | None = None
    """Width of the Gaussian ground truth, in pixels."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """The movie's metadata (``db_manual.yaml`` and the file's own), as extracted."""

    @field_serializer("points")
    def _points_as_lists(self, points: list[tuple[int, float, float]]) -> list[list[int | float]]:
        return [list(p) for p in points]  # YAML's safe dumper writes lists, not tuples

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


def read_event_record(path: str | Path) -> EventRecord:
    """The record in ``path``; unreadable files and records without id and label raise :class:`EventRecordError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise EventRecordError(f"{path}: cannot read the event record ({e})") from None
    if not isinstance(data, dict) or "id" not in data or "label" not in data:
        raise EventRecordError(f"{path}: not an event record (needs id and label)")
    try:
        return EventRecord.model_validate(data)
    except ValidationError as e:
        where = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise EventRecordError(f"{path}: not a valid event record ({where})") from None
