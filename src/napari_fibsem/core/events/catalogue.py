"""Event catalogue: an index of event folders queryable by metadata; the YAML files stay the truth.

SQLite by default (``events.sqlite`` beside the events, WAL mode, a fresh connection per call with
a busy timeout), so several processes can read and write at once without a server. ``rebuild``
re-indexes from the ``event.yaml`` files and is idempotent. Queries match on the event's own keys
(``label``, ``source``, ``dataset``) and its metadata:

- ``{cell_line: cos7}``: equality; a list in the record matches when it contains the value;
- ``{cell_line: [cos7, hela]}``: any of these;
- ``{fps: {min: 1, max: 10}}``, ``{date: {min: 2026-01-01}}``: inclusive ranges (dates as ISO text).

``open_catalogue(root, uri)`` picks the backend from a URI: SQLite (the default, or ``sqlite:///path``)
or MongoDB (``mongodb://...``, ``catalogue_mongo.py``, needs pymongo) with the same interface.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from napari_fibsem.core.events.catalogue_records import (
    CatalogueError,
    EventIndex,
    check_query,
    event_row,
    lookup,
    matches,
)
from napari_fibsem.core.events.event_record import EVENT_FILE

__all__ = ["BUSY_TIMEOUT_S", "DB_NAME", "Catalogue", "CatalogueError", "EventIndex", "event_row", "open_catalogue"]

DB_NAME = "events.sqlite"
BUSY_TIMEOUT_S = 30.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, dataset TEXT, label TEXT, source TEXT, folder TEXT, record TEXT
)
"""


def open_catalogue(root: str | Path, uri: str | None = None) -> EventIndex:
    """The catalogue of ``root`` in the database ``uri`` names.

    ``None``: ``events.sqlite`` beside the events; ``sqlite:///relative/path`` or
    ``sqlite:////absolute/path``: that SQLite file; ``mongodb://...`` or ``mongodb+srv://...``: a MongoDB
    server (database from the URI's path, else ``napari_fibsem``).
    """
    if uri is None:
        return Catalogue(root)
    if uri.startswith("sqlite:///"):
        return Catalogue(root, uri[len("sqlite:///") :] or None)
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        from napari_fibsem.core.events.catalogue_mongo import MongoCatalogue

        return MongoCatalogue(root, uri)
    scheme = uri.split("://", 1)[0] + "://" if "://" in uri else repr(uri)
    raise CatalogueError(
        f"unsupported catalogue URI {scheme}: use sqlite:///path/to/events.sqlite, mongodb://host[:port][/database] "
        "or mongodb+srv://host[/database] (or no URI for events.sqlite beside the events)"
    )


class Catalogue:
    """The events under ``root`` (``<dataset>/<event id>/event.yaml``) and their SQLite index."""

    def __init__(self, root: str | Path, db_path: str | Path | None = None) -> None:
        self.root = Path(root)
        self.db_path = Path(db_path) if db_path is not None else self.root / DB_NAME
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._enable_wal()
        with self._connect() as db:
            db.execute(_SCHEMA)

    def _enable_wal(self) -> None:
        """Put the file in WAL mode once, retrying while other openers hold it.

        Changing the journal mode needs an exclusive lock and SQLite answers "database is locked"
        at once instead of waiting in the busy handler, so processes opening a new catalogue
        together would fail without this loop. A file already in WAL mode is left untouched.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.002
        while True:
            db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S)
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
            finally:
                db.close()
            time.sleep(delay)
            delay = min(2 * delay, 0.1)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S)
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    # -- writing --------------------------------------------------------------------------------
    def _row(self, event_yaml: Path) -> tuple[str, str, str, str, str, str]:
        return event_row(self.root, event_yaml)

    def add(self, folders: list[Path]) -> int:
        """Index (or re-index) these event folders."""
        rows = [self._row(Path(f) / EVENT_FILE) for f in folders]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def rebuild(self) -> int:
        """Re-index every ``event.yaml`` under the root and drop entries whose folder is gone."""
        rows = [self._row(p) for p in sorted(self.root.glob(f"*/*/{EVENT_FILE}"))]
        with self._connect() as db:
            db.execute("DELETE FROM events")
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    # -- reading --------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def find(self, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Event records matching ``query`` (see the module docstring), sorted by id."""
        query = dict(query or {})
        check_query(query)
        with self._connect() as db:
            rows = db.execute("SELECT folder, record FROM events ORDER BY id").fetchall()
        out = []
        for folder, text in rows:
            rec = json.loads(text)
            rec["folder"] = folder
            if all(matches(lookup(rec, k), v) for k, v in query.items()):
                out.append(rec)
        return out
