"""Feature detection speed: every applicable catalogue feature on a 1024x1536 class mask, CPU.

Target: under 20 ms per mask for all features together. The baseline, run in the same process on
the same masks, is the straightforward script: for each feature, threshold the full mask for its
class, label it with ``skimage.measure.label``, keep the largest region (``regionprops``) and read
the point off that region's pixels. Our ``detect_features`` finds every class's bounding box in
one pass, labels each class once inside its box and shares the object between features.

Also prints the share of the generator's exact keypoints found within 2 px (same masks).

    python benchmarks/detection.py             # 12 scenes x 20 repeats at 1024x1536
    python benchmarks/detection.py --quick     # 2 small scenes (smoke run)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

TARGET_MS = 20.0


def scenes(n: int, size: tuple[int, int]):
    from napari_fibsem.core.synthetic.scene import generate_scene

    sides = ("left", "right", "top")
    return [
        generate_scene(100 + i, size=size, needle_side=sides[i % 3], landing_post=True, copper_adaptor=i % 2 == 0,
                       volume_block=i % 2 == 1, distractors=4)  # fmt: skip
        for i in range(n)
    ]


def baseline(mask: np.ndarray, names: list[str]) -> dict[str, tuple[float, float]]:
    """Per feature: full-image threshold, label, largest region, point from its pixel coordinates."""
    from skimage.measure import label, regionprops

    from napari_fibsem.core.detection import CATALOGUE
    from napari_fibsem.core.io.classes import ClassMap

    cmap = ClassMap.default()
    h, w = mask.shape
    out = {}
    for name in names:
        spec = CATALOGUE[name]
        if spec.class_name is None:
            out[name] = ((w - 1) / 2, (h - 1) / 2)
            continue
        binary = mask > 0 if spec.class_name == "*" else mask == cmap.id_of(spec.class_name)
        regions = regionprops(label(binary))
        if not regions:
            continue
        coords = max(regions, key=lambda r: r.area).coords  # (row, col)
        ys, xs = coords[:, 0], coords[:, 1]
        if spec.rule == "centroid":
            out[name] = (xs.mean(), ys.mean())
        elif spec.rule == "edge":
            key = {"left": xs, "right": -xs, "top": ys, "bottom": -ys}[spec.side]
            sel = key == key.min()
            out[name] = (xs[sel].mean(), ys[sel].mean())
        else:  # tips, corners, closest point: one extreme over all pixels
            out[name] = (xs.max(), ys[xs == xs.max()].mean())
    return out


def main(argv: list[str] | None = None) -> int:
    from napari_fibsem.core.detection import detect_features

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=12)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="2 scenes of 256x384, 3 repeats")
    args = p.parse_args(argv)
    size = (256, 384) if args.quick else (1024, 1536)
    n, repeats = (2, 3) if args.quick else (args.scenes, args.repeats)
    data = scenes(n, size)
    ours, base = [], []
    hits = total = 0
    features = 0
    for scene in data:
        found = detect_features(None, mask=scene.mask, pixel_size=scene.pixel_size)
        names = [f.name for f in found if f.found]
        features += len(names)
        for k, (x, y) in scene.keypoints.items():
            total += 1
            px = found[k].px
            hits += px is not None and np.hypot(px[0] - x, px[1] - y) <= 2
        for _ in range(repeats):  # interleaved, so a noisy neighbour slows both alike
            t = time.perf_counter()
            detect_features(None, mask=scene.mask, pixel_size=scene.pixel_size)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            baseline(scene.mask, names)
            base.append(time.perf_counter() - t)
    ours_ms, base_ms = 1e3 * statistics.median(ours), 1e3 * statistics.median(base)
    print(f"masks: {n} x {size[0]}x{size[1]}, {features / n:.1f} features found per mask, {repeats} repeats each")
    print(f"detect_features (all catalogue features): {ours_ms:.2f} ms per mask (median)")
    print(f"baseline (label + regionprops per feature): {base_ms:.2f} ms per mask (median)")
    print(f"speed-up over baseline: {base_ms / ours_ms:.1f}x")
    print(f"generator keypoints within 2 px: {hits}/{total} ({100 * hits / total:.1f}%)")
    verdict = "met" if ours_ms < TARGET_MS else "NOT met"
    print(f"target < {TARGET_MS:g} ms per mask: {verdict}" + (" (quick run: small masks)" if args.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
