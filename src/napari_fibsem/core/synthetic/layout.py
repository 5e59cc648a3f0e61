"""Random layouts: which objects a synthetic scene holds and where, as object descriptions.

Sizes scale with the image, so a 128x128 scene looks like a shrunken 1024x1536 one. Objects keep
apart so none hides another's keypoints: the needle stops short of the lamella, the landing post
goes on the side opposite the needle, blocks go where nothing else is. Every random number comes
from ``rng`` (each object from its own child generator, so switching one object off leaves the
others' draws alone).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from napari_fibsem.core.synthetic.objects import (
    CopperAdaptor,
    Lamella,
    LandingPost,
    Needle,
    Rect,
    SceneObject,
    Speck,
    Substrate,
    Trench,
    VolumeBlock,
)

if TYPE_CHECKING:
    from napari_fibsem.core.synthetic.config import SceneConfig


def child_rngs(rng: np.random.Generator, n: int) -> list[np.random.Generator]:
    """``n`` independent generators derived from ``rng`` (works on every supported numpy)."""
    return [np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=n)]


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


class _Occupancy:
    """What is already placed: solid rectangles, keep-out rectangles (trench) and the needle."""

    def __init__(self) -> None:
        self.solid: list[Rect] = []
        self.keepout: list[Rect] = []
        self.needle: Needle | None = None

    def hits(self, r: Rect, margin: int, keepout: bool = True) -> bool:
        g = r.grown(margin)
        rects = self.solid + (self.keepout if keepout else [])
        return any(g.intersects(o) for o in rects) or self._needle_hits(r, margin)

    def _needle_hits(self, r: Rect, margin: int) -> bool:
        n = self.needle
        if n is None:
            return False
        steps = int(min(512, max(16, math.ceil(n.length / max(n.tip_radius, 1.0)))))
        t = np.linspace(0.0, 1.0, steps)
        cx = n.base[0] + (n.tip[0] - n.base[0]) * t
        cy = n.base[1] + (n.tip[1] - n.base[1]) * t
        dx = np.maximum(np.maximum(r.x0 - cx, cx - r.x1), 0)
        dy = np.maximum(np.maximum(r.y0 - cy, cy - r.y1), 0)
        return bool(np.any(np.hypot(dx, dy) <= n.radius_at(t) + margin + 1))


def random_layout(rng: np.random.Generator, config: SceneConfig) -> list[SceneObject]:
    """Draw the objects of one scene for ``config`` (geometry in pixels of ``config.size``)."""
    h, w = config.size
    r_sub, r_lam, r_ndl, r_post, r_cu, r_vol, r_spk = child_rngs(rng, 7)
    ion = config.beam == "ion"
    objects: list[SceneObject] = [
        Substrate(
            seed=_seed(r_sub),
            level=float(r_sub.uniform(0.3, 0.46)),
            roughness=float(r_sub.uniform(0.5, 1.3)),
            grain=float(r_sub.uniform(0.6, 1.6)),
        )
    ]
    side = None
    if config.needle:
        side = config.needle_side
        choice = str(r_ndl.choice(["left", "right", "top"]))
        side = choice if side == "random" else side
    post_side = None
    if config.landing_post:
        post_side = {"left": "right", "right": "left"}.get(side or "", str(r_post.choice(["left", "right"])))
    extras = int(config.landing_post) + int(config.copper_adaptor) + int(config.volume_block)
    crowd = 1.0 - 0.09 * extras
    occ = _Occupancy()
    margin = max(1, round(0.012 * min(h, w)))

    lam = None
    if config.lamella:
        lam, trench = _lamella(r_lam, config, side, post_side, crowd, margin)
        if trench is not None:
            objects.append(trench)
            occ.keepout.append(trench.rect)
        objects.append(lam)
        occ.solid.append(lam.rect)
    if side is not None:
        occ.needle = _needle(r_ndl, config, side, lam)
        objects.append(occ.needle)
    if post_side is not None:
        post = _landing_post(r_post, config, post_side, occ, margin)
        if post is not None:
            objects.append(post)
            occ.solid.append(post.rect)
    if config.volume_block:
        rect = _place(r_vol, (h, w), (0.16 * w, 0.3 * w), (0.14 * h, 0.3 * h), occ, margin, crowd)
        if rect is not None:
            objects.append(
                VolumeBlock(
                    rect, _seed(r_vol), float(r_vol.uniform(0.42, 0.58)), cell=_px(r_vol, 0.025, 0.05, h, w)
                )
            )
            occ.solid.append(rect)
    if config.copper_adaptor:
        rect = _place(r_cu, (h, w), (0.1 * w, 0.24 * w), (0.1 * h, 0.24 * h), occ, margin, crowd)
        if rect is not None:
            b = float(r_cu.uniform(0.5, 0.7))
            objects.append(CopperAdaptor(rect, _seed(r_cu), b, grain=_px(r_cu, 0.012, 0.03, h, w)))
            occ.solid.append(rect)
    for _ in range(config.distractors):
        speck = _speck(r_spk, (h, w), occ, ion)
        if speck is not None:
            objects.append(speck)
            occ.solid.append(speck.bounds())  # specks keep apart too
    return objects


def _px(rng: np.random.Generator, lo: float, hi: float, h: int, w: int) -> float:
    """A length in pixels drawn as a fraction of the shorter image side."""
    return float(max(2.0, rng.uniform(lo, hi) * min(h, w)))


def _lamella(rng, config, side, post_side, crowd, margin) -> tuple[Lamella, Trench | None]:
    h, w = config.size
    ion = config.beam == "ion"
    width = rng.uniform(0.2, 0.4) * crowd * w
    ratio = rng.uniform(0.05, 0.13) if ion else rng.uniform(0.15, 0.32)
    mx, up, lo = (
        (rng.uniform(0.004, 0.03) * w, rng.uniform(0.07, 0.17) * h, rng.uniform(0.05, 0.13) * h)
        if config.trench
        else (0.0, 0.0, 0.0)
    )
    room = {"left": 0.0, "right": 0.0, "top": 0.0}
    if side is not None:
        room[side] = 0.17 * (h if side == "top" else w)
    if post_side is not None:
        room[post_side] = max(room[post_side], 0.16 * w)
    for _ in range(40):
        lw = max(8, round(width))
        lh = min(max(3, round(lw * ratio)), max(3, round(0.3 * h)))
        tmx, tup, tlo = (max(2, round(v)) if config.trench else 0 for v in (mx, up, lo))
        ow, oh = lw + 2 * tmx, tup + lh + tlo
        x_lo, x_hi = margin + round(room["left"]), w - margin - round(room["right"]) - ow
        y_lo = max(margin, round(room["top"]) - tup)
        y_hi = h - margin - oh
        if x_lo <= x_hi and y_lo <= y_hi:
            break
        width, mx, up, lo = width * 0.88, mx * 0.85, up * 0.85, lo * 0.85
    else:  # tiny image: centre whatever is left
        x_lo = x_hi = max(0, (w - ow) // 2)
        y_lo = y_hi = max(0, (h - oh) // 2)
    tx, ty = int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1))
    rect = Rect(tx + tmx, ty + tup, tx + tmx + lw - 1, ty + tup + lh - 1)
    edge = max(1.0, rng.uniform(0.12, 0.25) * lh if ion else rng.uniform(0.05, 0.12) * lh)
    lam = Lamella(
        rect, _seed(rng), float(rng.uniform(0.72, 0.95)), edge=float(edge), face=float(rng.uniform(0.2, 0.34))
    )
    trench = None
    if config.trench:
        trect = Rect(tx, ty, min(tx + ow - 1, w - 1), min(ty + oh - 1, h - 1))
        wall = max(1, round(rng.uniform(0.25, 0.6) * tup))
        trench = Trench(trect, _seed(rng), float(rng.uniform(0.05, 0.13)), wall=wall)
    return lam, trench


def _needle(rng, config, side, lam: Lamella | None) -> Needle:
    h, w = config.size
    s = min(h, w)
    rt = max(1.5, rng.uniform(0.006, 0.014) * s)
    rb = max(rt + 2.0, rng.uniform(0.035, 0.07) * s)
    gap = max(3.0, rng.uniform(0.02, 0.06) * s)
    brightness = float(rng.uniform(0.68, 0.92))
    lim = math.radians
    if side in ("left", "right"):
        if lam is not None:
            r = lam.rect
            depth = (r.x0 - gap - rt) if side == "left" else (w - 1 - (r.x1 + gap + rt))
            ty = rng.uniform(r.y0 - 0.5 * r.height, r.y1 + 0.5 * r.height)
        else:
            depth = rng.uniform(0.3, 0.65) * w
            ty = rng.uniform(0.25, 0.75) * h
        depth = max(depth, rt + 2)
        ty = float(np.clip(ty, rt + 1, h - 2 - rt))
        # slope dy/d(depth) so that the axis crosses the entry border well inside it
        k_lo = max(math.tan(lim(-25)), (ty - (h - 1 - 1.1 * rb)) / depth)
        k_hi = min(math.tan(lim(40)), (ty - 1.1 * rb) / depth)
        k = rng.uniform(k_lo, k_hi) if k_lo <= k_hi else 0.0
        run = depth + rb + 2
        if side == "left":
            tip = (float(depth), ty)
            base = (tip[0] - run, ty - k * run)
        else:
            tip = (float(w - 1 - depth), ty)
            base = (tip[0] + run, ty - k * run)
        return Needle(base, tip, float(rb), float(rt), side, _seed(rng), brightness)
    # from the top
    if lam is not None:
        r = lam.rect
        depth = r.y0 - gap - rt
        tx = rng.uniform(r.x0 + 0.15 * r.width, r.x1 - 0.15 * r.width)
    else:
        depth = rng.uniform(0.3, 0.65) * h
        tx = rng.uniform(0.25, 0.75) * w
    depth = max(depth, rt + 2)
    tx = float(np.clip(tx, rt + 1, w - 2 - rt))
    k_lo = max(math.tan(lim(-35)), (tx - (w - 1 - 1.1 * rb)) / depth)
    k_hi = min(math.tan(lim(35)), (tx - 1.1 * rb) / depth)
    k = rng.uniform(k_lo, k_hi) if k_lo <= k_hi else 0.0
    run = depth + rb + 2
    tip = (tx, float(depth))
    base = (tx - k * run, tip[1] - run)
    return Needle(base, tip, float(rb), float(rt), "top", _seed(rng), brightness)


def _landing_post(rng, config, post_side, occ: _Occupancy, margin) -> LandingPost | None:
    h, w = config.size
    brightness = float(rng.uniform(0.68, 0.88))
    spots = int(rng.integers(0, 9))
    seed = _seed(rng)
    bar = rng.random() < 0.25  # a grid bar runs the full height
    # the post stays beyond whatever is already there on its side
    solid = occ.solid + occ.keepout
    if post_side == "right":
        lo = max([r.x1 for r in solid], default=w // 2) + margin + 1
        region = (lo, w - 1)
    else:
        hi = min([r.x0 for r in solid], default=w // 2) - margin - 1
        region = (0, hi)
    for attempt in range(60):
        shrink = 1.0 - 0.6 * attempt / 60
        pw = max(3, round(rng.uniform(0.05, 0.12) * w * shrink))
        x_lo, x_hi = (region[0], region[1] - pw + 1) if attempt < 40 else (0, w - pw)
        if x_hi < x_lo:
            continue
        x0 = int(rng.integers(x_lo, x_hi + 1))
        top = 0 if bar and attempt < 20 else round(rng.uniform(0.15, 0.6 + 0.3 * attempt / 60) * h)
        rect = Rect(x0, min(top, h - 3), x0 + pw - 1, h - 1)
        if not occ.hits(rect, margin):
            return LandingPost(rect, seed, brightness, spots=spots)
    return None


def _place(rng, shape, w_range, h_range, occ: _Occupancy, margin, crowd) -> Rect | None:
    """A free rectangle fully inside the image: random tries, shrinking, then a scan."""
    h, w = shape
    m = margin
    for attempt in range(80):
        shrink = crowd * (1.0 - 0.6 * attempt / 80)
        rw = max(4, round(rng.uniform(*w_range) * shrink))
        rh = max(4, round(rng.uniform(*h_range) * shrink))
        if rw > w - 2 * m or rh > h - 2 * m:
            continue
        x0 = int(rng.integers(m, w - m - rw + 1))
        y0 = int(rng.integers(m, h - m - rh + 1))
        rect = Rect(x0, y0, x0 + rw - 1, y0 + rh - 1)
        if not occ.hits(rect, margin):
            return rect
    rw = rh = max(4, round(0.05 * min(h, w)))
    ys = np.arange(m, h - m - rh + 1, max(1, rh // 4))
    xs = np.arange(m, w - m - rw + 1, max(1, rw // 4))
    for idx in rng.permutation(ys.size * xs.size):
        y0, x0 = int(ys[idx // xs.size]), int(xs[idx % xs.size])
        rect = Rect(x0, y0, x0 + rw - 1, y0 + rh - 1)
        if not occ.hits(rect, margin):
            return rect
    return None


def _speck(rng, shape, occ: _Occupancy, ion: bool) -> Speck | None:
    h, w = shape
    radius = float(max(1.0, rng.uniform(0.003, 0.012) * min(h, w)))
    brightness = float(rng.uniform(0.75, 1.0))
    seed = _seed(rng)
    for _ in range(30):
        x, y = rng.uniform(radius + 1, w - 2 - radius), rng.uniform(radius + 1, h - 2 - radius)
        speck = Speck((float(x), float(y)), radius, seed, brightness)
        if not occ.hits(speck.bounds(), 1, keepout=False):
            return speck
    return None
