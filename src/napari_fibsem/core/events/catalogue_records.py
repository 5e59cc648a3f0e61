"""What every event-catalogue backend shares: the error, the interface, the stored row, the query rules.

Kept apart from the backends (``catalogue`` for SQLite, ``catalogue_mongo`` for MongoDB) so the
SQLite module can open a MongoDB catalogue without the two importing each other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.events.event_record import EventRecordError, read_event_record


class CatalogueError(FibsemError, ValueError):
    """A catalogue query or an event file is invalid; the message says which."""


class EventIndex(Protocol):
    """What every catalogue backend offers (SQLite ``Catalogue``, ``MongoCatalogue``)."""

    root: Path

    def add(self, folders: list[Path]) -> int: ...
    def rebuild(self) -> int: ...
    def __len__(self) -> int: ...
    def find(self, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...


def event_row(root: Path, event_yaml: Path) -> tuple[str, str, str, str, str, str]:
    """``(id, dataset, label, source, folder, record as JSON)`` of one event file, as every backend stores it."""
    try:
        record = read_event_record(event_yaml)
    except EventRecordError as e:
        raise CatalogueError(str(e)) from None
    rec = record.model_dump()
    folder = event_yaml.parent
    dataset = folder.parent.relative_to(root).as_posix() if root in folder.parents else folder.parent.name
    rec = {**rec, "dataset": dataset}
    return (str(rec["id"]), dataset, str(rec["label"]), str(rec.get("source", "")), str(folder),
            json.dumps(rec, default=str))  # fmt: skip


def lookup(rec: Mapping[str, Any], key: str) -> Any:
    """The value a query key names: the event's own keys, then its metadata, then ``metadata.extra``."""
    if key in ("id", "label", "source", "dataset"):
        return rec.get(key)
    meta = rec.get("metadata") or {}
    if key in meta:
        return meta[key]
    return (meta.get("extra") or {}).get(key)


def check_query(query: Mapping[str, Any]) -> None:
    """Refuse a malformed range (``{min, max}`` only) before any backend runs the query."""
    for key, want in query.items():
        if isinstance(want, Mapping) and (not want or set(want) - {"min", "max"}):
            raise CatalogueError(f"query key {key!r}: a range is {{min: ..., max: ...}}, got {dict(want)}")


def matches(value: Any, want: Any) -> bool:
    """Whether a record's value satisfies one query term: equality, any-of, or an inclusive range."""
    if isinstance(want, Mapping):
        if value is None or isinstance(value, (list, dict)):
            return False
        lo, hi = want.get("min"), want.get("max")
        try:
            return (lo is None or comparable(value) >= comparable(lo)) and (
                hi is None or comparable(value) <= comparable(hi)
            )
        except TypeError:
            return False
    wants = want if isinstance(want, list) else [want]
    values = value if isinstance(value, list) else [value]
    return any(comparable(v) == comparable(w) for v in values for w in wants)


def comparable(v: Any) -> Any:
    """Dates compare as ISO text, numbers as floats, the rest as text."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, float)):
        return float(v)
    return str(v)
