"""The MongoDB event catalogue (through mongomock) answers like the SQLite one; URI selection."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import threading

import pytest
import tifffile
import yaml
from typer.testing import CliRunner

from napari_fibsem.core.events import catalogue_mongo
from napari_fibsem.core.events.catalogue import Catalogue, CatalogueError, open_catalogue
from napari_fibsem.core.events.ingest import ingest
from napari_fibsem.core.events.synthetic_movie import synthetic_movie
from napari_fibsem.core.events.training_sets import read_set, training_set

mongomock = pytest.importorskip("mongomock")
pymongo = pytest.importorskip("pymongo")
MongoCatalogue = catalogue_mongo.MongoCatalogue

# per dataset: lists, booleans, numbers written as text, an explicit null, a key shadowed by
# metadata (b's extra fps), a key with a dot, empty lists
META = {
    "a": {"cell_line": "cos7", "microscope": "isim", "fps": 2.0, "date": "2026-01-10",
          "extra": {"stain": "sir", "tags": ["fast", "1"], "n": 3, "ok": True, "dotted.key": "x"}},
    "b": {"cell_line": ["cos7", "hela"], "microscope": "isim", "fps": 5.0, "date": "2026-02-20", "comment": None,
          "extra": {"n": "3", "ok": "True", "fps": 99, "tags": ["slow"]}},
    "c": {"cell_line": "hela", "microscope": "confocal", "fps": 1.0, "date": "2026-03-30", "temperature_c": 37,
          "extra": {"n": 3.5, "tags": [], "stain": None}},
}  # fmt: skip

QUERIES = [
    {},
    {"cell_line": "cos7"},
    {"cell_line": ["hela", "u2os"]},
    {"cell_line": "cos7", "microscope": "isim", "fps": {"min": 3}},
    {"fps": {"min": 1, "max": 2}},
    {"fps": {"max": 1.5}},
    {"fps": {"min": 2, "max": None}},
    {"fps": 5},
    {"fps": "5"},
    {"fps": 99},
    {"fps": {"min": 1, "max": "9"}},
    {"fps": float("nan")},
    {"fps": {"min": float("nan")}},
    {"date": {"min": "2026-02-01", "max": "2026-12-31"}},
    {"date": {"min": dt.date(2026, 2, 1)}},
    {"date": dt.date(2026, 1, 10)},
    {"microscope": ["confocal", "none"]},
    {"microscope": "widefield"},
    {"microscope": []},
    {"n": 3},
    {"n": "3"},
    {"n": {"min": 1}},
    {"n": {"min": "0"}},
    {"ok": True},
    {"ok": "True"},
    {"ok": {"min": "T"}},
    {"comment": None},
    {"stain": None},
    {"stain": "None"},
    {"nonexistent": None},
    {"nonexistent": "x"},
    {"nonexistent": {"min": 0}},
    {"dotted.key": "x"},
    {"tags": "fast"},
    {"tags": 1},
    {"tags": "1"},
    {"tags": {"min": "a"}},
    {"cell_line": {"min": "a"}},
    {"temperature_c": {"min": 30, "max": 40}},
    {"label": "negative"},
    {"label": "event", "dataset": ["a", "c"]},
    {"dataset": "b", "source": "b/m1.tif"},
    {"stain": ["sir", None]},
    {"extra": {"min": "a"}},
]


def _raw(tmp_path):
    """Three datasets, five synthetic movies with three split events each, metadata as in META."""
    parent = tmp_path / "raw"
    seed = 0
    for ds, movies in (("a", 2), ("b", 2), ("c", 1)):
        (parent / ds).mkdir(parents=True)
        (parent / ds / "db_manual.yaml").write_text(yaml.safe_dump(META[ds]))
        for m in range(movies):
            movie = synthetic_movie(seed, frames=20, size=(80, 96), splits=3)
            seed += 1
            tifffile.imwrite(parent / ds / f"m{m}.tif", movie.stack)
            rows = [f"{i},{p.frame},{p.y},{p.x}" for i, p in enumerate(movie.points)]
            (parent / ds / f"m{m}.csv").write_text("\n".join(["index,axis-0,axis-1,axis-2", *rows]) + "\n")
    return parent


@pytest.fixture
def events_root(tmp_path):
    root = tmp_path / "events"
    ingest(_raw(tmp_path), root, size=32, auto_negatives=1)
    return root


@pytest.fixture
def client():
    return mongomock.MongoClient()


def _fake_mongo_client(client, seen):
    """``pymongo.MongoClient`` replaced: records the URI, serves ``client``'s data, keeps the URI's database."""

    def make(uri):
        seen.append(uri)
        plain = uri.replace("+srv", "")  # mongomock can't resolve SRV records
        return mongomock.MongoClient(plain, _store=client._store)

    return make


class _OneAtATime:
    """A mongomock client, database, collection or cursor whose operations take turns, as on a server.

    mongomock is not thread-safe (concurrent reads and writes break its in-memory store); a real
    server applies each operation atomically, which the lock stands in for.
    """

    def __init__(self, target, lock=None):
        self._target, self._lock = target, lock or threading.RLock()

    def __getitem__(self, name):
        return _OneAtATime(self._target[name], self._lock)

    def __iter__(self):
        with self._lock:
            return iter(list(self._target))

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with self._lock:
                out = attr(*args, **kwargs)
            return _OneAtATime(out, self._lock) if isinstance(out, (mongomock.Database, mongomock.Collection,
                                                                      mongomock.collection.Cursor)) else out  # fmt: skip

        return call


def test_same_results_as_sqlite(events_root, client):
    sqlite, mongo = Catalogue(events_root), MongoCatalogue(events_root, client=client)
    assert sqlite.rebuild() == mongo.rebuild() == len(sqlite) == len(mongo) > 0
    sizes = []
    for query in QUERIES:
        expected = sqlite.find(query)
        assert mongo.find(query) == expected, query
        sizes.append(len(expected))
    assert len(set(sizes)) >= 5 and sum(s == 0 for s in sizes) < len(sizes) // 2  # the queries discriminate
    with pytest.raises(CatalogueError, match="a range is"):
        mongo.find({"fps": {"above": 3}})


def test_training_set_is_the_same_with_either_backend(events_root, client, tmp_path):
    sqlite, mongo = Catalogue(events_root), MongoCatalogue(events_root, client=client)
    sqlite.rebuild()
    mongo.rebuild()
    query = {"microscope": ["isim", "confocal"]}
    a = training_set(sqlite, query, tmp_path / "sets_sqlite", seed=3)
    b = training_set(mongo, query, tmp_path / "sets_mongo", seed=3)
    assert a.name == b.name and read_set(a) == read_set(b)


def test_rebuild_idempotent_drops_removed_and_readds_replace(events_root, client):
    cat = MongoCatalogue(events_root, client=client)
    n = cat.rebuild()
    before = cat.find()
    assert cat.rebuild() == n and cat.find() == before and len(cat) == n
    folders = [p.parent for p in events_root.glob("*/*/event.yaml")]
    assert cat.add(folders) == n and cat.add(folders[:3]) == 3 and len(cat) == n  # upserts, no duplicates
    gone = next(events_root.glob("c/*/event.yaml")).parent
    shutil.rmtree(gone)
    assert cat.rebuild() == n - 1 and len(cat) == n - 1 and gone.name not in {e["id"] for e in cat.find()}
    assert MongoCatalogue(events_root, client=client).find() == cat.find()  # what another process sees
    (events_root / "a" / "broken").mkdir()
    (events_root / "a" / "broken" / "event.yaml").write_text("just text")
    with pytest.raises(CatalogueError, match="not an event record"):
        cat.rebuild()
    assert len(cat) == n - 1  # nothing written when a file is bad


def test_two_roots_share_a_collection(events_root, client, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(events_root, other)
    shutil.rmtree(other / "c")
    first, second = MongoCatalogue(events_root, client=client), MongoCatalogue(other, client=client)
    n, m = first.rebuild(), second.rebuild()
    assert m < n and len(first) == n and len(second) == m  # same event ids, kept apart by root
    assert all(e["folder"].startswith(str(other)) for e in second.find())
    assert {e["dataset"] for e in second.find({"cell_line": "hela"})} == {"b"}
    gone = next(other.glob("a/*/event.yaml")).parent
    shutil.rmtree(gone)
    assert second.rebuild() == m - 1 and len(first) == n  # the other root's entries stay
    assert gone.name in {e["id"] for e in first.find()}
    assert client["napari_fibsem"]["events"].count_documents({}) == n + m - 1


def test_concurrent_writers_and_readers(events_root, client):
    folders = [p.parent for p in events_root.glob("*/*/event.yaml")]
    errors = []
    server = _OneAtATime(client)

    def work(i):
        try:
            cat = MongoCatalogue(events_root, client=server)
            for _ in range(5):
                cat.add(folders[i % 2 :: 2])  # threads overlap: each event written by two of them
                cat.find({"cell_line": "hela"})
        except Exception as e:  # noqa: BLE001 (collected for the assertion)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(MongoCatalogue(events_root, client=client)) == len(folders)
    assert client["napari_fibsem"]["events"].count_documents({}) == len(folders)


def test_open_catalogue_by_uri(events_root, tmp_path, monkeypatch, client):
    default = open_catalogue(events_root)
    assert isinstance(default, Catalogue) and default.db_path == events_root / "events.sqlite"
    db = tmp_path / "elsewhere" / "index.sqlite"
    chosen = open_catalogue(events_root, f"sqlite:///{db}")
    assert isinstance(chosen, Catalogue) and chosen.db_path == db and db.is_file()
    seen = []
    monkeypatch.setattr(pymongo, "MongoClient", _fake_mongo_client(client, seen))
    for uri in ("mongodb://db.lab.example:27017/labdb", "mongodb+srv://cluster.lab.example/labdb"):
        cat = open_catalogue(events_root, uri)
        assert isinstance(cat, MongoCatalogue) and seen[-1] == uri
    assert cat.rebuild() > 0 and client["labdb"]["events"].count_documents({}) == len(cat)
    with pytest.raises(CatalogueError, match="unsupported catalogue URI postgres://") as err:
        open_catalogue(events_root, "postgres://user:secret@host/db")
    assert "secret" not in str(err.value)
    with pytest.raises(CatalogueError, match="unsupported"):
        open_catalogue(events_root, "events.sqlite")


def test_missing_pymongo_says_what_to_install(events_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymongo", None)  # makes `import pymongo` fail
    with pytest.raises(ImportError, match="pip install pymongo"):
        open_catalogue(events_root, "mongodb://localhost:27017")


def test_cli_index_and_set_with_uri(events_root, tmp_path, monkeypatch, client):
    from napari_fibsem.cli import app

    monkeypatch.setattr(pymongo, "MongoClient", _fake_mongo_client(client, []))
    runner = CliRunner()
    uri = "mongodb://localhost:27017/labdb"
    result = runner.invoke(app, ["events", "index", str(events_root), "--uri", uri])
    assert result.exit_code == 0, result.output
    assert "MongoDB labdb.events" in result.output and "27017" not in result.output
    n = client["labdb"]["events"].count_documents({})
    assert f"indexed {n} event(s)" in result.output
    args = ["events", "set", str(events_root), "-o", str(tmp_path / "sets"), "--where", "microscope=isim"]
    result = runner.invoke(app, [*args, "--uri", uri])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "sets").iterdir()
    sqlite = Catalogue(events_root, tmp_path / "x.sqlite")
    sqlite.rebuild()
    assert set(read_set(folder)["folders"]) == {e["id"] for e in sqlite.find({"microscope": "isim"})}
    db = tmp_path / "own.sqlite"
    result = runner.invoke(app, ["events", "index", str(events_root), "--uri", f"sqlite:///{db}"])
    assert result.exit_code == 0 and str(db) in result.output and len(Catalogue(events_root, db)) == n
    result = runner.invoke(app, ["events", "index", str(events_root), "--uri", "redis://localhost"])
    assert result.exit_code == 2 and "unsupported catalogue URI" in result.output
