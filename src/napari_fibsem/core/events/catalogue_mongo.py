"""The event catalogue in MongoDB, for labs that already run a server: same interface as ``Catalogue``.

One document per event, keyed by (events root, event id), so several roots can share a collection,
re-adding an event replaces it and concurrent writers never duplicate one. Each document holds the
record exactly as the SQLite index stores it (what ``find`` returns) and, under ``q``, the value of
every queryable key already normalised the way ``catalogue_records.matches`` compares them: numbers as
floats, dates, booleans and the rest as text, lists as their elements. Queries then translate to
plain filters (``$in`` for equality and any-of, matching inside lists; ``$gte``/``$lte`` for ranges,
which MongoDB applies only between values of one type, as the SQLite backend does) and give the same
events in the same order. pymongo is imported only here, when a ``MongoCatalogue`` is made.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from napari_fibsem.core.events.catalogue_records import CatalogueError, check_query, comparable, event_row
from napari_fibsem.core.events.event_record import EVENT_FILE

DEFAULT_DATABASE = "napari_fibsem"
DEFAULT_COLLECTION = "events"
_NOTHING: dict[str, Any] = {"_id": {"$in": []}}  # a filter no document matches


def _pymongo() -> ModuleType:
    try:
        return importlib.import_module("pymongo")
    except ImportError as e:
        raise ImportError(
            f"the MongoDB event catalogue needs pymongo, which could not be imported ({e}). "
            "Install it with: pip install pymongo (or pip install napari-fibsem[mongo])"
        ) from e


class MongoCatalogue:
    """The events under ``root`` (``<dataset>/<event id>/event.yaml``) indexed in a MongoDB collection.

    ``client`` replaces the ``MongoClient(uri)`` made otherwise (tests pass ``mongomock.MongoClient()``).
    ``database`` defaults to the one named in the URI, else ``napari_fibsem``.
    """

    def __init__(
        self,
        root: str | Path,
        uri: str = "mongodb://localhost:27017",
        database: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        client: Any = None,
    ) -> None:
        pymongo = _pymongo()
        self._errors_type = pymongo.errors.PyMongoError
        self.root = Path(os.path.abspath(root))  # absolute, so every process names this root alike
        self._key = str(self.root)
        self._client = client if client is not None else pymongo.MongoClient(uri)
        db = self._client[database] if database else self._client.get_default_database(DEFAULT_DATABASE)
        self._events = db[collection]
        self._where = f"MongoDB {db.name}.{collection}"  # no URI: it may hold a password
        with self._errors("cannot set up the collection"):
            self._events.create_index([("root", 1), ("id", 1)])
            self._events.create_index([("root", 1), ("dataset", 1)])

    def __repr__(self) -> str:
        return f"MongoCatalogue({str(self.root)!r}, {self._where})"

    __str__ = __repr__

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except self._errors_type as e:
            raise CatalogueError(f"{self._where}: {doing} ({e})") from None

    # -- writing --------------------------------------------------------------------------------
    def _document(self, event_yaml: Path) -> dict[str, Any]:
        event_id, dataset, label, source, folder, text = event_row(self.root, event_yaml)
        record = json.loads(text)
        return {
            "_id": {"root": self._key, "id": event_id},
            "root": self._key, "id": event_id, "dataset": dataset, "label": label, "source": source,
            "folder": folder, "record": record, "q": _queryable(record),
        }  # fmt: skip

    def _write(self, docs: list[dict[str, Any]]) -> None:
        # one upsert per event (not bulk_write: mongomock 4.3 rejects pymongo 4.20's ReplaceOne)
        with self._errors("cannot write events"):
            for d in docs:
                self._events.replace_one({"_id": d["_id"]}, d, upsert=True)

    def add(self, folders: list[Path]) -> int:
        """Index (or re-index) these event folders."""
        docs = [self._document(Path(f) / EVENT_FILE) for f in folders]
        self._write(docs)
        return len(docs)

    def rebuild(self) -> int:
        """Re-index every ``event.yaml`` under the root and drop this root's entries whose folder is gone.

        Every file is read before anything is written; entries are replaced before stale ones are
        dropped, so a reader meanwhile sees old or new entries, never an empty catalogue.
        """
        docs = [self._document(p) for p in sorted(self.root.glob(f"*/*/{EVENT_FILE}"))]
        self._write(docs)
        keep = {d["id"] for d in docs}
        with self._errors("cannot drop stale events"):
            indexed = [d["id"] for d in self._events.find({"root": self._key}, {"id": 1})]
            stale = [i for i in indexed if i not in keep]
            for i in range(0, len(stale), 1000):
                self._events.delete_many({"root": self._key, "id": {"$in": stale[i : i + 1000]}})
        return len(docs)

    # -- reading --------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._errors("cannot count events"):
            return int(self._events.count_documents({"root": self._key}))

    def find(self, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Event records matching ``query`` (see ``catalogue``'s docstring), sorted by id."""
        query = dict(query or {})
        check_query(query)
        filters = mongo_filter(self._key, query)
        with self._errors("cannot query events"):
            docs = list(self._events.find(filters, {"record": 1, "folder": 1}).sort("id", 1))
        return [{**d["record"], "folder": d["folder"]} for d in docs]


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _entry(key: str, value: Any) -> dict[str, Any]:
    """Key ``k``; ``v``: what equality compares (list elements); ``r``: what ranges compare, if any."""
    items = value if isinstance(value, list) else [value]
    equal = [n for n in map(comparable, items) if not _isnan(n)]  # NaN equals nothing
    entry: dict[str, Any] = {"k": key, "v": equal}
    if value is not None and not isinstance(value, (list, dict)):
        r = comparable(value)
        entry["r"] = None if _isnan(r) else r  # NaN: in an unbounded range only (null fails every bound)
    return entry


def _queryable(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per key ``catalogue._lookup`` resolves: own keys, then metadata, then metadata.extra."""
    values = {k: rec.get(k) for k in ("id", "label", "source", "dataset")}
    meta = rec.get("metadata") or {}
    if isinstance(meta, Mapping):
        for k, v in meta.items():
            values.setdefault(k, v)
        extra = meta.get("extra") or {}
        if isinstance(extra, Mapping):
            for k, v in extra.items():
                values.setdefault(k, v)
    return [_entry(k, v) for k, v in values.items()]


def mongo_filter(root: str, query: Mapping[str, Any]) -> dict[str, Any]:
    """The MongoDB filter selecting the events of ``root`` that ``query`` matches."""
    return {"$and": [{"root": root}, *(_clause(k, v) for k, v in query.items())]}


def _clause(key: Any, want: Any) -> dict[str, Any]:
    if isinstance(want, Mapping):  # inclusive range; a missing or null bound is open
        bounds = {
            op: comparable(want[b]) for op, b in (("$gte", "min"), ("$lte", "max")) if want.get(b) is not None
        }
        if any(_isnan(b) for b in bounds.values()):
            return _NOTHING
        return {"q": {"$elemMatch": {"k": key, "r": {"$exists": True, **bounds}}}}
    wants = [w for w in map(comparable, want if isinstance(want, list) else [want]) if not _isnan(w)]
    clause = {"q": {"$elemMatch": {"k": key, "v": {"$in": wants}}}}
    if "None" in wants:  # a key an event lacks reads as None, like catalogue._lookup
        return {"$or": [clause, {"q.k": {"$ne": key}}]}
    return clause
