"""Embedding cache for the SAM service: intensity normalisation, cache keys, RAM LRU, disk store.

Normalisation rule (the same image always gives the same encoder input, so cached embeddings
stay valid and a folder is treated consistently): with an intensity ``window=(low, high)``
every image is mapped linearly so that ``low`` -> 0 and ``high`` -> 255, clipped. Without a
window the rule is fixed per dtype: uint8 as is, other integer types by their full range
(uint16: 0..65535), bool as 0/255, floats are taken to be in [0, 1]. Never per-image
percentiles: two images of a folder would get different contrast and a cached embedding
would depend on which other images were open. Use :func:`folder_window` to derive one window
for a whole folder of narrow-range uint16 images.

Hand-written on purpose: entries are keyed by the image content (sha1 of dtype, shape and pixels)
plus model and normalisation, kept in a small RAM LRU and stored as ``.npz`` read without pickle;
general caches (joblib, diskcache, functools) key by arguments or pickle their values.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_fibsem.core.io.atomic import atomic_path

log = logging.getLogger(__name__)

PREPROCESS_VERSION = 1  # bump when the encoder input for the same image and window changes
CACHE_ENV = "NAPARI_FIBSEM_CACHE"


def cache_root() -> Path:
    """``$NAPARI_FIBSEM_CACHE`` if set, else the platform's user cache folder (not created here)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-fibsem"))


def check_image(image: np.ndarray) -> np.ndarray:
    """A 2D grayscale (or HxWx1, or HxWx3 RGB) numeric image; anything else is a clear error."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"SAM needs a 2D grayscale or HxWx3 image, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool) or np.issubdtype(image.dtype, np.complexfloating):
        raise ValueError(f"SAM needs a numeric image, got dtype {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"empty image of shape {image.shape}")
    return image


def normalise(image: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """float32 in [0, 255] by the module's rule (see the module docstring)."""
    image = check_image(image)
    if window is not None:
        low, high = float(window[0]), float(window[1])
        out = (image.astype(np.float32) - low) * np.float32(255.0 / (high - low))
    elif image.dtype == np.uint8:
        return image.astype(np.float32)
    elif image.dtype == bool:
        out = image.astype(np.float32) * 255
    elif np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = (image.astype(np.float32) - info.min) * np.float32(255.0 / (info.max - info.min))
    else:
        out = image.astype(np.float32) * 255
    np.nan_to_num(out, copy=False, nan=0.0)
    return np.clip(out, 0, 255, out=out)


def check_window(window: tuple[float, float] | None) -> tuple[float, float] | None:
    if window is None:
        return None
    low, high = (float(v) for v in window)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ValueError(f"intensity window must be two finite numbers with low < high, got {window}")
    return low, high


def folder_window(images: Iterable[np.ndarray], percentiles: tuple[float, float] = (0.5, 99.5),
                  max_pixels: int = 1_000_000) -> tuple[float, float]:
    """One intensity window for a set of images: percentiles of their pooled (subsampled) pixels.

    Compute it once per folder and pass it to :class:`SamService` so every image of the folder is
    normalised alike (and the cache keys stay stable while the folder is open).
    """
    samples = []
    images = list(images)
    per_image = max(1, max_pixels // max(1, len(images)))
    for image in images:
        flat = check_image(image).reshape(-1)
        step = max(1, flat.size // per_image)
        samples.append(flat[::step].astype(np.float64))
    if not samples:
        raise ValueError("folder_window needs at least one image")
    low, high = np.percentile(np.concatenate(samples), percentiles)
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def image_sha1(image: np.ndarray) -> str:
    """sha1 of dtype, shape and pixel bytes (so a reshaped or retyped image is another image)."""
    image = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{image.dtype.str}|{image.shape}|".encode())
    h.update(image.reshape(-1).view(np.uint8))
    return h.hexdigest()


def embedding_key(image_hash: str, model_identity: str, window: tuple[float, float] | None,
                  input_long_side: int, version: str) -> tuple[str, dict[str, Any]]:
    """Cache key and the signature it hashes (stored beside the features for checking)."""
    signature = {
        "image_sha1": image_hash,
        "model": model_identity,
        "preprocess": {"version": PREPROCESS_VERSION, "window": window, "long_side": input_long_side},
        "napari_fibsem": version,
    }
    return hashlib.sha1(json.dumps(signature, sort_keys=True).encode()).hexdigest(), signature


class RamCache:
    """Thread-safe LRU of the last ``size`` embeddings (any objects) by key."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"RAM cache size must be >= 0, got {size}")
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, item: Any) -> None:
        with self._lock:
            if self.size == 0:
                return
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class DiskCache:
    """One ``<key>.npz`` per embedding (features + sizes + signature), written atomically.

    Least recently used files are removed once the folder passes ``max_bytes`` (reads refresh a
    file's mtime). A file that cannot be read or whose signature differs is deleted and treated
    as a miss, so a crash or a version change costs a recompute, never a wrong mask.
    """

    def __init__(self, folder: str | Path, max_bytes: int = 2 * 1024**3) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str, signature: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = json.loads(str(data["signature"]))
                if stored != json.loads(json.dumps(signature)):
                    raise ValueError("signature differs")
                out = {"features": data["features"], "original_size": tuple(int(v) for v in data["original_size"]),
                       "input_size": tuple(int(v) for v in data["input_size"])}
        except Exception as e:  # truncated, corrupt or stale: recompute
            log.warning("dropping unusable SAM embedding cache file %s (%s)", path, e)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return out

    def save(self, key: str, signature: dict[str, Any], features: np.ndarray,
             original_size: tuple[int, int], input_size: tuple[int, int]) -> Path:
        path = self.path(key)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, features=features, original_size=np.asarray(original_size),
                         input_size=np.asarray(input_size), signature=np.asarray(json.dumps(signature, sort_keys=True)))
        self.prune()
        return path

    def prune(self) -> None:
        """Remove least recently used files until the folder fits ``max_bytes``."""
        try:
            files = [(p.stat(), p) for p in self.folder.glob("*.npz") if not p.name.startswith(".")]
        except OSError:
            return
        total = sum(st.st_size for st, _ in files)
        for st, p in sorted(files, key=lambda item: item[0].st_mtime):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                p.unlink()
                total -= st.st_size
