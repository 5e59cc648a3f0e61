"""Folders built beside their target and renamed into place: readable by colleagues, never half there."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from napari_fibsem.core.io.atomic import atomic_dir
from napari_fibsem.core.synthetic.dataset import write_dataset


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_folder_follows_the_umask(tmp_path, umask_022):
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    assert _mode(tmp_path / "out") == 0o755  # not mkdtemp's 0700
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_synthetic_dataset_is_readable_by_colleagues(tmp_path, umask_022):
    write_dataset(tmp_path / "synth", n=1, size=(64, 96))
    assert _mode(tmp_path / "synth") == 0o755


def test_replaces_an_old_folder_only_on_success(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the staging folder is gone

    with atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old one is deleted


def test_saved_files_follow_the_umask_and_keep_a_replaced_files_mode(tmp_path, umask_022):
    from napari_fibsem.core.io.atomic import atomic_write_text
    from napari_fibsem.core.io.imageio import write_labels

    atomic_write_text(tmp_path / "notes.txt", "a")
    write_labels(tmp_path / "labels" / "a.tif", np.zeros((8, 8), np.uint8))
    assert _mode(tmp_path / "notes.txt") == 0o644  # not mkstemp's 0600: colleagues can read it
    assert _mode(tmp_path / "labels" / "a.tif") == 0o644
    os.chmod(tmp_path / "notes.txt", 0o640)  # a group-only file someone set up stays group-only
    atomic_write_text(tmp_path / "notes.txt", "b")
    assert _mode(tmp_path / "notes.txt") == 0o640 and (tmp_path / "notes.txt").read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", "notes.txt"]  # no temporaries left
