"""Training sets from a catalogue query: events split by source movie, seeded, reusable.

Events from one movie are strongly correlated, so splitting events at random leaks the test set
into training; here whole movies go to train, validation or test. A set's folder name is derived
from the query, split and seed, so asking again returns the same folder instead of a new set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from napari_fibsem.core.events.catalogue import CatalogueError, EventIndex
from napari_fibsem.core.io.atomic import atomic_write_text

SET_FILE = "set.yaml"


def training_set(
    catalogue: EventIndex,
    query: Mapping[str, Any] | None,
    out_root: str | Path,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> Path:
    """The folder of the set matching ``query``: ``set.yaml`` lists the event ids per split.

    ``catalogue`` is any backend (``Catalogue``, ``MongoCatalogue``, see ``open_catalogue``).
    """
    if len(split) != 3 or any(s < 0 for s in split) or not abs(sum(split) - 1) < 1e-6:
        raise CatalogueError(f"split must be three fractions (train, val, test) summing to 1, got {split}")
    query = dict(query or {})
    key = json.dumps({"query": query, "split": list(split), "seed": seed}, sort_keys=True, default=str)
    folder = Path(out_root) / f"set_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (folder / SET_FILE).is_file():
        return folder
    events = catalogue.find(query)
    if not events:
        raise CatalogueError(f"no events match the query {query}")
    movies: dict[str, list[str]] = {}
    for e in events:
        movies.setdefault(f"{e['dataset']}/{e.get('source', '')}", []).append(e["id"])
    names = sorted(movies)
    order = np.random.default_rng(seed).permutation(len(names))
    total = len(events)
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    taken = 0
    for i in order:  # fill train, then val, then test, by event count, whole movies at a time
        share = taken / total
        part = "train" if share < split[0] else ("val" if share < split[0] + split[1] else "test")
        parts[part] += movies[names[i]]
        taken += len(movies[names[i]])
    record = {
        "query": query,
        "split": {"train": split[0], "val": split[1], "test": split[2]},
        "seed": seed,
        "movies": {p: sorted({m for m in names if set(movies[m]) & set(ids)}) for p, ids in parts.items()},
        "events": {p: sorted(ids) for p, ids in parts.items()},
        "folders": {e["id"]: e["folder"] for e in events},
    }
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / SET_FILE, yaml.safe_dump(record, sort_keys=False))
    return folder


def read_set(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / SET_FILE
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CatalogueError(f"{path}: cannot read the training set ({e})") from None
