"""Seeded, position-anchored noise fields for the synthetic scene renderer.

Textures are functions of (seed, sample coordinates) rather than draws from a running generator,
so an object keeps its texture when a simulated stage move shifts it in the frame: a frame and
its shifted successor cross-correlate the way real frames do. Everything is vectorised: noise is
evaluated on a coarse lattice and interpolated with gathers, so a full 1024x1536 field costs a
few passes over the image.
"""

from __future__ import annotations

import numpy as np

_U64 = (1 << 64) - 1
_MY = np.uint64(0x9E3779B97F4A7C15)
_MX = np.uint64(0xC2B2AE3D27D4EB4F)
_F1 = np.uint64(0xFF51AFD7ED558CCD)
_F2 = np.uint64(0xC4CEB9FE1A85EC53)


def _hash(iy: np.ndarray, ix: np.ndarray, seed: int) -> np.ndarray:
    """Uniform values in [-1, 1) from integer lattice coordinates (broadcast) and a seed."""
    mix = np.uint64((int(seed) * 0x165667B19E3779F9 + 0x27D4EB2F165667C5) & _U64)
    h = np.asarray(iy, np.int64).view(np.uint64) * _MY
    h = h ^ (np.asarray(ix, np.int64).view(np.uint64) * _MX) ^ mix
    h ^= h >> np.uint64(33)
    h *= _F1
    h ^= h >> np.uint64(29)
    h *= _F2
    h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-23) - np.float32(1.0)


def _smooth(f: np.ndarray) -> np.ndarray:
    return f * f * (3.0 - 2.0 * f)


def _value_noise_grid(uy: np.ndarray, ux: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise on the grid ``uy x ux`` (lattice units), shape (len(uy), len(ux))."""
    iy = np.floor(uy).astype(np.int64)
    ix = np.floor(ux).astype(np.int64)
    fy = _smooth((uy - iy).astype(np.float32))[:, None]
    fx = _smooth((ux - ix).astype(np.float32))[None, :]
    iy, ix = iy[:, None], ix[None, :]
    top = _hash(iy, ix, seed) * (1 - fx) + _hash(iy, ix + 1, seed) * fx
    bot = _hash(iy + 1, ix, seed) * (1 - fx) + _hash(iy + 1, ix + 1, seed) * fx
    return top * (1 - fy) + bot * fy


def _interp_axis(arr: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``arr`` along ``axis`` at fractional indices ``pos`` (via gathers)."""
    n = arr.shape[axis]
    pos = np.clip(pos, 0, n - 1)
    i0 = np.minimum(np.floor(pos).astype(np.intp), max(n - 2, 0))
    i1 = np.minimum(i0 + 1, n - 1)
    f = (pos - i0).astype(np.float32)
    a, b = np.take(arr, i0, axis=axis), np.take(arr, i1, axis=axis)
    f = f[:, None] if axis == 0 else f[None, :]
    return a + (b - a) * f


def resize_linear(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a smooth 2-D field to ``shape`` (align-corners linear), float32."""
    arr = np.asarray(arr, np.float32)
    h, w = shape
    py = np.linspace(0, arr.shape[0] - 1, h) if h > 1 else np.zeros(1)
    px = np.linspace(0, arr.shape[1] - 1, w) if w > 1 else np.zeros(1)
    return _interp_axis(_interp_axis(arr, px, 1), py, 0)


def upsample(arr: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Linear upsampling of a field sampled every ``factor`` pixels (``full[::factor, ::factor]``)
    back to ``shape``, so low-resolution sample ``i`` lands exactly on pixel ``i * factor``."""
    arr = np.asarray(arr, np.float32)
    py = np.arange(shape[0]) / factor
    px = np.arange(shape[1]) / factor
    return _interp_axis(_interp_axis(arr, px, 1), py, 0)


def fbm(
    shape: tuple[int, int],
    cell: float | tuple[float, float],
    seed: int,
    origin: tuple[float, float] = (0.0, 0.0),
    octaves: int = 4,
    gain: float = 0.5,
    min_lattice: float = 3.0,
) -> np.ndarray:
    """Fractal value noise, float32 of ``shape``, roughly zero mean and within [-1, 1].

    ``cell`` is the largest feature size in pixels, ``(cell_y, cell_x)`` for anisotropic texture
    (e.g. vertical streaks). Pixel ``(r, c)`` samples sample coordinates ``origin + (r, c)``.
    """
    h, w = shape
    cy, cx = (cell, cell) if np.isscalar(cell) else cell
    cy, cx = max(float(cy), 1.0), max(float(cx), 1.0)
    oy, ox = origin
    octaves = max(1, int(octaves))
    # octaves are evaluated on one lattice whose spacing is the finest useful cell
    ly = max(cy / 2 ** (octaves - 1), min(min_lattice, cy))
    lx = max(cx / 2 ** (octaves - 1), min(min_lattice, cx))
    ky = np.arange(np.floor(oy / ly), np.floor((oy + h - 1) / ly) + 2)
    kx = np.arange(np.floor(ox / lx), np.floor((ox + w - 1) / lx) + 2)
    field = np.zeros((ky.size, kx.size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        sy, sx = cy / 2**o, cx / 2**o
        if o and (sy < ly * 0.99 or sx < lx * 0.99):
            break
        field += np.float32(amp) * _value_noise_grid(ky * ly / sy, kx * lx / sx, seed * 7919 + o)
        total += amp
        amp *= gain
    field /= np.float32(total)
    py = (oy + np.arange(h)) / ly - ky[0]
    px = (ox + np.arange(w)) / lx - kx[0]
    return _interp_axis(_interp_axis(field, px, 1), py, 0) * np.float32(1.6)


def fbm1d(n: int, cell: float, seed: int, origin: float = 0.0, octaves: int = 3) -> np.ndarray:
    """1-D fractal noise of length ``n`` (rough edges, curtain profiles)."""
    return fbm((1, n), (1.0, cell), seed, (0.0, origin), octaves)[0]


def voronoi_grains(
    shape: tuple[int, int], grain: float, seed: int, origin: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Jittered-grid Voronoi cells (polycrystalline metal): per-pixel grain value in [-1, 1) and
    distance in pixels to the nearest grain boundary (approximate: half of F2 - F1)."""
    h, w = shape
    g = max(float(grain), 2.0)
    y = (origin[0] + np.arange(h, dtype=np.float32))[:, None] / g
    x = (origin[1] + np.arange(w, dtype=np.float32))[None, :] / g
    cy, cx = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    best = np.full(shape, np.inf, np.float32)
    second = np.full(shape, np.inf, np.float32)
    value = np.zeros(shape, np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ny, nx = cy + dy, cx + dx
            fy = ny + 0.5 + 0.45 * _hash(ny, nx, seed)
            fx = nx + 0.5 + 0.45 * _hash(ny, nx, seed + 1)
            d = np.sqrt((y - fy) ** 2 + (x - fx) ** 2)
            closer = d < best
            second = np.where(closer, best, np.minimum(second, d))
            value = np.where(closer, _hash(ny, nx, seed + 2), value)
            best = np.where(closer, d, best)
    return value, (second - best) * np.float32(g / 2)
