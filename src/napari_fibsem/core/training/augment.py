"""EM-suited augmentation on numpy arrays, seeded only by the RNG the dataset hook passes in.

Geometry (crop, rotation, zoom, flips) moves image and mask together; the image is interpolated
linearly and the mask by nearest neighbour, so labels stay class ids. Intensity changes
(autocontrast, equalisation, blur, brightness/contrast, noise) touch the image only and keep its
dtype, so the model's own :class:`~napari_fibsem.core.models.Normalization` runs afterwards exactly
as at inference.

Rotation, zoom and the crop are one affine resampling of just the crop window: a 512x512 crop of
a 3072x2048 frame costs the same as rotating a 512x512 image.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from napari_fibsem.core.training.config import AugmentConfig
from napari_fibsem.core.training.losses import IGNORE


class EMAugment:
    """A :data:`~napari_fibsem.core.data.dataset.Transform`: ``(image, mask, rng) -> (image, mask)``.

    ``crop_size`` (height, width) cuts a random window of that size (reflect-padding images that
    are smaller), so images of different sizes batch together; ``None`` keeps the full frame.
    With ``config.enabled`` false only the crop is done.
    """

    def __init__(self, config: AugmentConfig | None = None, crop_size: tuple[int, int] | None = None) -> None:
        self.config = config if config is not None else AugmentConfig()
        self.crop_size = tuple(crop_size) if crop_size is not None else None

    def __repr__(self) -> str:
        return f"EMAugment(crop_size={self.crop_size}, {self.config!r})"

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if image.shape != mask.shape or image.ndim != 2:
            raise ValueError(f"image {image.shape} and mask {mask.shape} must be the same 2D shape")
        cfg = self.config
        centre = None
        if self.crop_size is not None and cfg.foreground > 0 and rng.random() < cfg.foreground:
            centre = foreground_point(mask, rng, cfg.foreground_weights)
        if cfg.enabled:
            image, mask = self._geometry(image, mask, rng, centre)
            image = self._intensity(image, rng)
        elif self.crop_size is not None:
            image, mask = random_crop(image, mask, self.crop_size, rng, centre)
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

    # -- geometry -------------------------------------------------------------------------------
    def _geometry(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, centre=None):
        cfg = self.config
        if cfg.rotate90:
            k = int(rng.integers(4))
            image, mask = np.rot90(image, k), np.rot90(mask, k)
            if centre is not None:
                centre = _rot90_point(centre, k, mask.shape)
        angle = float(rng.uniform(-cfg.rotate, cfg.rotate)) if cfg.rotate > 0 and rng.random() < 0.5 else 0.0
        lo, hi = cfg.scale
        zoom = float(rng.uniform(lo, hi)) if hi > lo and rng.random() < 0.5 else 1.0
        out_shape = self.crop_size or image.shape
        if angle == 0.0 and zoom == 1.0:
            if self.crop_size is not None:
                image, mask = random_crop(image, mask, self.crop_size, rng, centre)
        else:
            image, mask = affine_crop(image, mask, out_shape, angle, zoom, rng, centre)
        if cfg.flip:
            if rng.random() < 0.5:
                image, mask = image[:, ::-1], mask[:, ::-1]
            if rng.random() < 0.5:
                image, mask = image[::-1], mask[::-1]
        return image, mask

    # -- intensity ------------------------------------------------------------------------------
    def _intensity(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        dtype = image.dtype
        top = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0
        x = image.astype(np.float32)
        # draw every random number in a fixed order, whether or not the op runs, so switching one
        # op off does not reshuffle the others
        r_auto, r_eq, r_blur = rng.random(3)
        sigma = rng.uniform(*cfg.blur_sigma)
        c = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
        b = rng.uniform(-cfg.brightness, cfg.brightness) * top
        if r_auto < cfg.autocontrast:
            x = autocontrast(x, top)
        if r_eq < cfg.equalize:
            x = equalize(x, top)
        if cfg.contrast > 0 or cfg.brightness > 0:
            mean = np.float32(x.mean())
            x = (x - mean) * np.float32(c) + mean + np.float32(b)
        if r_blur < cfg.blur:
            x = ndimage.gaussian_filter(x, sigma=float(sigma), mode="mirror")
        if cfg.noise > 0:
            x = x + rng.normal(0.0, cfg.noise * top, size=x.shape).astype(np.float32)
        np.clip(x, 0.0, top, out=x)
        if np.issubdtype(dtype, np.integer):
            return np.rint(x).astype(dtype)
        return x.astype(dtype)


def foreground_point(
    mask: np.ndarray, rng: np.random.Generator, weights: list[float] | None = None
) -> tuple[int, int] | None:
    """A random pixel of a foreground class drawn among those in ``mask`` (None if none).

    Drawing the class first, then the pixel, gives a small volume block as many crops as a large
    landing post: uniform crops would show a rare class to the network a few times per epoch.
    ``weights`` (indexed by class id; ids beyond it count 1) makes some classes likelier than
    others; with all weights 0 among the present classes, the draw is uniform.
    """
    present = np.unique(mask)
    present = present[(present != 0) & (present != IGNORE)]
    if present.size == 0:
        return None
    if weights is None:
        cls = present[int(rng.integers(present.size))]
    else:
        w = np.array([weights[c] if c < len(weights) else 1.0 for c in present], dtype=np.float64)
        w = w / w.sum() if w.sum() > 0 else np.full(present.size, 1.0 / present.size)
        cls = present[int(rng.choice(present.size, p=w))]
    idx = np.flatnonzero(mask == cls)
    flat = int(idx[int(rng.integers(idx.size))])
    return divmod(flat, mask.shape[1])


def _rot90_point(point: tuple[int, int], k: int, rotated_shape: tuple[int, int]) -> tuple[int, int]:
    """Where ``point`` lands after ``np.rot90(a, k)`` (``rotated_shape`` is the result's shape)."""
    rh, rw = rotated_shape
    k %= 4
    if k == 1:
        return rh - 1 - point[1], point[0]
    if k == 2:
        return rh - 1 - point[0], rw - 1 - point[1]
    if k == 3:
        return point[1], rw - 1 - point[0]
    return point


def random_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    centre: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The same random ``size`` window of both arrays (exact pixels, no resampling).

    A side shorter than the crop is reflect-padded first, image and mask alike. With ``centre``
    the window holds that pixel (placed at a random position inside it, not always the middle).
    """
    ch, cw = size
    h, w = image.shape
    if h < ch or w < cw:
        pads = ((0, max(0, ch - h)), (0, max(0, cw - w)))
        image, mask = np.pad(image, pads, mode="symmetric"), np.pad(mask, pads, mode="symmetric")
        h, w = image.shape
    if centre is None:
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
    else:
        top = int(np.clip(centre[0] - rng.integers(0, ch), 0, h - ch))
        left = int(np.clip(centre[1] - rng.integers(0, cw), 0, w - cw))
    return image[top : top + ch, left : left + cw], mask[top : top + ch, left : left + cw]


def affine_crop(
    image: np.ndarray,
    mask: np.ndarray,
    out_shape: tuple[int, int],
    angle: float,
    zoom: float,
    rng: np.random.Generator,
    centre: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample an ``out_shape`` window rotated by ``angle`` degrees and magnified by ``zoom``.

    The window centre is drawn so the rotated window stays inside the image where it fits (near
    ``centre`` when given: within the middle half of the window); outside the image both arrays
    are mirrored, consistently.
    """
    h, w = image.shape
    oh, ow = out_shape
    t = math.radians(angle)
    cos, sin = math.cos(t) / zoom, math.sin(t) / zoom
    matrix = np.array([[cos, -sin], [sin, cos]])  # output (row, col) offset -> input offset
    half_h = 0.5 * (abs(cos) * (oh - 1) + abs(sin) * (ow - 1))
    half_w = 0.5 * (abs(sin) * (oh - 1) + abs(cos) * (ow - 1))
    if centre is None:
        cy, cx = _centre(h, half_h, rng), _centre(w, half_w, rng)
    else:
        cy = float(np.clip(centre[0] + rng.uniform(-0.25, 0.25) * oh / zoom, half_h, max(half_h, h - 1 - half_h)))
        cx = float(np.clip(centre[1] + rng.uniform(-0.25, 0.25) * ow / zoom, half_w, max(half_w, w - 1 - half_w)))
    out_centre = np.array([(oh - 1) / 2.0, (ow - 1) / 2.0])
    offset = np.array([cy, cx]) - matrix @ out_centre
    img = ndimage.affine_transform(
        image.astype(np.float32), matrix, offset=offset, output_shape=(oh, ow), order=1, mode="mirror"
    )
    msk = ndimage.affine_transform(mask, matrix, offset=offset, output_shape=(oh, ow), order=0, mode="mirror")
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        img = np.clip(np.rint(img), info.min, info.max)
    return img.astype(image.dtype), msk.astype(mask.dtype)


def _centre(length: int, half: float, rng: np.random.Generator) -> float:
    lo, hi = half, (length - 1) - half
    if hi < lo:  # window larger than the image: centre it, with a little jitter
        mid = (length - 1) / 2.0
        return float(mid + rng.uniform(-0.5, 0.5) * (lo - hi) * 0.5)
    return float(rng.uniform(lo, hi))


def autocontrast(x: np.ndarray, top: float) -> np.ndarray:
    """Stretch ``[min, max]`` to ``[0, top]`` (a flat image is left alone)."""
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-6:
        return x
    return (x - np.float32(lo)) * np.float32(top / (hi - lo))


def equalize(x: np.ndarray, top: float, nbins: int = 256) -> np.ndarray:
    """Histogram equalisation to ``[0, top]`` (the cumulative histogram as the intensity map)."""
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-6:
        return x
    hist, edges = np.histogram(x, bins=nbins, range=(lo, hi))
    cdf = np.cumsum(hist).astype(np.float64)
    cdf /= cdf[-1]
    centres = 0.5 * (edges[:-1] + edges[1:])
    return np.interp(x, centres, cdf * top).astype(np.float32)
