"""Atomic writes: a crash mid-save leaves the previous file or folder intact.

Everything a user wrote (labels, keypoints, logs, bundles) goes through here: write to a
temporary file in the same folder, flush and fsync, then ``os.replace`` over the target.
Whole folders (datasets, imports, event crops) are built in a hidden staging folder beside the
target and renamed into place (``atomic_dir``).

Hand-written on purpose: no library gives fsync + ``os.replace`` for arbitrary writers (tifffile,
numpy, zip, YAML dumpers writing to a path) with permissions that follow the umask like a plain
``open`` would, plus the same for whole folders.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    ``suffix`` defaults to the target's suffix, so writers that look at extensions still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else path.suffix + ".tmp"
    tmp_path = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}"
    # Not mkstemp: its 0600 would make every saved file unreadable to colleagues. O_EXCL with
    # 0666 lets the kernel apply the user's umask; a file being replaced keeps its own mode.
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        if path.exists():
            shutil.copymode(path, tmp_path)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding))


def staging_dir(target: str | Path) -> Path:
    """Create an empty hidden folder beside ``target`` to build it in.

    Not ``tempfile.mkdtemp``: that makes the folder 0700, so once renamed into place colleagues
    could not read the dataset; ``mkdir`` follows the user's umask like any folder they make.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.partial"
    tmp.mkdir()
    return tmp


def replace_dir(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` onto ``target``; an old ``target`` is moved aside first and
    deleted last, so a failed rename puts it back."""
    if target.exists() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        tmp.rename(target)
        return
    old = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.replaced"
    target.rename(old)
    try:
        tmp.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a staging folder that replaces ``target`` on success and is removed on error."""
    target = Path(target)
    tmp = staging_dir(target)
    try:
        yield tmp
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
