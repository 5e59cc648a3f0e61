"""Numba kernels for Winograd F(4x4, 3x3)'s input and output transforms on channels-last data.

PyTorch can only express the transforms as a tile-gathering copy plus a 36x36 matrix product,
which runs at a fraction of the CPU's speed and makes narrow layers lose to the direct
convolution. These kernels read each input tile straight from the (unpadded) NHWC activation,
apply ``B^T d B`` with its constant coefficients (12 multiply-adds per value instead of 36) and
write the 36 transformed planes for a range of tile rows; the output kernel applies ``A^T m A``,
adds the bias and writes the NHWC result in place. Processing a few tile rows at a time keeps the
transformed planes in cache and under the allocator's mmap threshold.

numba is optional (extra ``fast``): the kernels below are plain functions until :func:`load`
compiles them, so importing this module neither needs numba nor touches its settings. The
thread pool's layer is chosen on first use (:func:`_start_pool`) and the thread count only for
the length of a call (:meth:`Kernels.threads`).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from napari_fibsem.core._optional import require

LOCK = threading.Lock()
"""Numba's default thread pool must not be entered by two Python threads at once, so every call
holds this lock (two concurrent predictions take turns only for these short kernels)."""


@dataclass(frozen=True)
class Kernels:
    """The compiled transforms, and the numba they came from."""

    numba: ModuleType
    input_transform: Callable[..., None]
    output_transform: Callable[..., None]

    @contextmanager
    def threads(self, n: int) -> Iterator[None]:
        """Hold :data:`LOCK` and run the kernels on ``n`` threads (as many as torch uses, within
        numba's pool size); the calling thread's previous count is restored afterwards."""
        numba = self.numba
        with LOCK:
            previous = numba.get_num_threads()
            numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
            try:
                yield
            finally:
                numba.set_num_threads(previous)


@functools.cache
def load() -> Kernels:
    """Compile (or load from numba's on-disk cache) both kernels and start the thread pool, so
    that a missing piece fails here, once, and not in the middle of a prediction. Raises
    ImportError without numba, or numba's error where the pool cannot start."""
    numba = require("numba", "fast")
    jit = numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
    # the kernels reach these two by their global names, resolved when they are compiled (on the
    # first call below): the parallel loop and the inlined transform of one 6-vector
    globals().update(prange=numba.prange, _bt=numba.njit(inline="always")(_bt_py))
    kernels = Kernels(numba, jit(_input_transform_py), jit(_output_transform_py))
    _start_pool(kernels)
    return kernels


def _start_pool(kernels: Kernels) -> None:
    """Run both kernels once on a tiny input, which launches numba's thread pool if nothing has.

    OpenMP is asked for unless the user chose a layer (``NUMBA_THREADING_LAYER``): with numba's own
    "workqueue" pool beside torch's OpenMP threads the two pools fight for the cores at every
    hand-over and the whole network got slower than without Winograd. The layer is fixed once the
    pool runs, so the setting is put back afterwards for any other reader of numba's config.
    """
    config = kernels.numba.config
    previous = config.THREADING_LAYER
    try:
        kernels.numba.threading_layer()  # raises ValueError while no pool has been launched
    except ValueError:
        if not os.environ.get("NUMBA_THREADING_LAYER"):
            config.THREADING_LAYER = "omp"
    x = np.ones((1, 5, 6, 3), np.float32)
    v = np.empty((36, 4, 3), np.float32)
    y = np.empty((1, 5, 6, 3), np.float32)
    try:
        with LOCK:
            kernels.input_transform(x, 0, 2, 2, v)
            kernels.output_transform(v, np.zeros(3, np.float32), 0, 2, 2, y)
    finally:
        config.THREADING_LAYER = previous


# -- the kernels, as plain Python until load() compiles them --------------------------------------
prange = range  # numba.prange once load() has run


def _bt_py(d0, d1, d2, d3, d4, d5, out, i, c):  # type: ignore[no-untyped-def]
    """``B^T`` applied to one 6-vector (for channel ``c``), written to rows ``i..i+5`` of ``out``."""
    out[i, c] = 4 * d0 - 5 * d2 + d4
    out[i + 1, c] = -4 * (d1 + d2) + d3 + d4
    out[i + 2, c] = 4 * (d1 - d2) - d3 + d4
    out[i + 3, c] = 2 * (d3 - d1) - d2 + d4
    out[i + 4, c] = 2 * (d1 - d3) - d2 + d4
    out[i + 5, c] = 4 * d1 - 5 * d3 + d5


_bt = _bt_py  # compiled by load()


def _input_transform_py(x, row0, row1, tiles_w, v):  # type: ignore[no-untyped-def]
    """Tiles of tile rows ``row0:row1`` of the NHWC image ``x`` -> ``v`` (36, tiles, C).

    Tile rows are numbered over the batch (``n * tiles_h + i``); tile ``(i, j)`` covers input
    rows ``4i-1 .. 4i+4`` and columns ``4j-1 .. 4j+4``, zero outside the image.
    """
    n_img, h, w, ch = x.shape
    tiles_h = (h + 3) // 4
    zero = np.zeros(ch, np.float32)
    for job in prange(row1 - row0):
        n, ti = divmod(row0 + job, tiles_h)
        cols = np.empty((6, 6, ch), np.float32)  # B^T over the rows of each of the 6 columns
        rows = [zero] * 6
        for tj in range(tiles_w):
            t = job * tiles_w + tj
            for s in range(6):
                xx = 4 * tj - 1 + s
                for k in range(6):
                    yy = 4 * ti - 1 + k
                    rows[k] = x[n, yy, xx] if 0 <= yy < h and 0 <= xx < w else zero
                r0, r1, r2, r3, r4, r5 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
                col = cols[s]
                for c in range(ch):
                    _bt(r0[c], r1[c], r2[c], r3[c], r4[c], r5[c], col, 0, c)
            for r in range(6):
                q = cols[:, r]
                q0, q1, q2, q3, q4, q5 = q[0], q[1], q[2], q[3], q[4], q[5]
                out = v[6 * r : 6 * r + 6, t]
                for c in range(ch):
                    _bt(q0[c], q1[c], q2[c], q3[c], q4[c], q5[c], out, 0, c)


def _output_transform_py(m, bias, row0, row1, tiles_w, y):  # type: ignore[no-untyped-def]
    """``m`` (36, tiles, K) of tile rows ``row0:row1`` -> their 4x4 output tiles in the NHWC ``y``,
    plus ``bias``; tiles hanging over the bottom or right edge are cropped."""
    n_img, h, w, k_out = y.shape
    tiles_h = (h + 3) // 4
    for job in prange(row1 - row0):
        n, ti = divmod(row0 + job, tiles_h)
        part = np.empty((6, 4, k_out), np.float32)  # A^T over the 6 columns of each of the 6 rows
        for tj in range(tiles_w):
            t = job * tiles_w + tj
            for r in range(6):
                mr = m[6 * r : 6 * r + 6, t]
                m0, m1, m2, m3, m4, m5 = mr[0], mr[1], mr[2], mr[3], mr[4], mr[5]
                p = part[r]
                for k in range(k_out):
                    a, b, c, d = m1[k] + m2[k], m1[k] - m2[k], m3[k] + m4[k], m3[k] - m4[k]
                    p[0, k] = m0[k] + a + c
                    p[1, k] = b + 2 * d
                    p[2, k] = a + 4 * c
                    p[3, k] = b + 8 * d + m5[k]
            for j in range(4):
                xx = 4 * tj + j
                if xx >= w:
                    break
                pj = part[:, j]
                p0, p1, p2, p3, p4, p5 = pj[0], pj[1], pj[2], pj[3], pj[4], pj[5]
                for i in range(4):
                    yy = 4 * ti + i
                    if yy >= h:
                        break
                    out = y[n, yy, xx]
                    if i == 0:
                        for k in range(k_out):
                            out[k] = p0[k] + (p1[k] + p2[k]) + (p3[k] + p4[k]) + bias[k]
                    elif i == 1:
                        for k in range(k_out):
                            out[k] = (p1[k] - p2[k]) + 2 * (p3[k] - p4[k]) + bias[k]
                    elif i == 2:
                        for k in range(k_out):
                            out[k] = (p1[k] + p2[k]) + 4 * (p3[k] + p4[k]) + bias[k]
                    else:
                        for k in range(k_out):
                            out[k] = (p1[k] - p2[k]) + 8 * (p3[k] - p4[k]) + p5[k] + bias[k]
