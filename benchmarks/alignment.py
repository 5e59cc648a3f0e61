"""Alignment accuracy and speed: phase correlation on 1024x1536 synthetic pairs with known shifts, CPU.

Two kinds of pair, both with independent noise in the two frames:

* re-rendered: the scene's objects moved by a random integer shift and imaged again with a fresh
  style (contrast, brightness, gamma, charging, detector direction drawn anew);
* sub-pixel: a clean frame moved by a random real shift (cubic spline), noise added to both, and
  gamma/contrast/brightness changed on the moved one.

Prints the error (px) per kind and sub-pixel method (scikit-image's
``phase_cross_correlation`` as a comparison row), the peak/second-peak ratio of the pairs and
of unrelated frames (what ``min_confidence`` has to separate), and the time per pair.

    python benchmarks/alignment.py            # 10 scenes at 1024x1536
    python benchmarks/alignment.py --quick    # 2 scenes at 256x384 (smoke run)
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import numpy as np


def pairs(n: int, size: tuple[int, int], max_shift: float):
    from scipy import ndimage as ndi

    from napari_fibsem.core.synthetic.scene import generate_scene, random_style, render

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        scene = generate_scene(i, size=size, beam=("ion", "electron")[i % 2])
        dx, dy = (int(v) for v in rng.integers(-max_shift, max_shift + 1, 2))
        style = random_style(np.random.default_rng(100 + i), scene.config)
        moved, _ = render([o.shifted(dx, dy) for o in scene.objects], size, np.random.default_rng(200 + i), style)
        out.append(("re-rendered", scene.image, moved, dx, dy))
        clean = generate_scene(i, size=size, noise=0).image.astype(float)
        fx, fy = rng.uniform(-max_shift, max_shift, 2)
        shifted = ndi.shift(clean, (fy, fx), order=3, mode="reflect")
        ref = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255)
        img = np.clip(shifted + rng.normal(0, 20, clean.shape), 0, 255)
        img = 255 * (img / 255) ** 1.4 * 0.7 + 25
        out.append(("sub-pixel", ref.astype(np.uint8), img.astype(np.uint8), float(fx), float(fy)))
    return out


def main(argv: list[str] | None = None) -> int:
    from napari_fibsem.core.automation.alignment import estimate_shift
    from napari_fibsem.core.synthetic.scene import generate_scene

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="2 scenes of 256x384")
    args = p.parse_args(argv)
    size = (256, 384) if args.quick else (1024, 1536)
    n = 2 if args.quick else args.scenes
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}")
    print(f"{n} scenes of {size[0]}x{size[1]}, shifts up to {size[0] // 8} px")
    data = pairs(n, size, size[0] // 8)
    estimate_shift(data[0][1], data[0][2])  # warm-up (FFT plans)
    for label, kwargs in (("DFT grid x20 + parabola", {"upsample": 20}), ("parabola only", {"upsample": 1})):
        errors: dict[str, list[float]] = {}
        times, ratios = [], []
        for kind, ref, img, dx, dy in data:
            t0 = time.perf_counter()
            est = estimate_shift(ref, img, **kwargs)
            times.append(time.perf_counter() - t0)
            errors.setdefault(kind, []).append(math.hypot(est.dx_px - dx, est.dy_px - dy))
            ratios.append(est.confidence)
        print(f"{label}: {statistics.median(times) * 1e3:.0f} ms per pair (median); "
              f"peak/second-peak min {min(ratios):.2f}")
        for kind, errs in errors.items():
            print(f"  {kind}: error max {max(errs):.3f} px, mean {statistics.fmean(errs):.3f} px ({len(errs)} pairs)")
    _skimage_row(data)
    unrelated = [
        estimate_shift(generate_scene(1000 + i, size=size).image, generate_scene(2000 + i, size=size).image).confidence
        for i in range(n)
    ]
    print(f"unrelated frames: peak/second-peak max {max(unrelated):.2f}, mean {statistics.fmean(unrelated):.2f}")
    return 0


def _skimage_row(data: list) -> None:
    """The library alternative, for comparison: scikit-image's phase correlation with a x20 DFT grid."""
    from skimage.registration import phase_cross_correlation

    errors: dict[str, list[float]] = {}
    times = []
    for kind, ref, img, dx, dy in data:
        t0 = time.perf_counter()
        shift, _, _ = phase_cross_correlation(ref.astype(np.float32), img.astype(np.float32), upsample_factor=20)
        times.append(time.perf_counter() - t0)
        est_dy, est_dx = -shift  # it returns the shift that moves ``img`` back onto ``ref``
        errors.setdefault(kind, []).append(math.hypot(est_dx - dx, est_dy - dy))
    print(f"skimage phase_cross_correlation x20: {statistics.median(times) * 1e3:.0f} ms per pair (median)")
    for kind, errs in errors.items():
        print(f"  {kind}: error max {max(errs):.3f} px, mean {statistics.fmean(errs):.3f} px ({len(errs)} pairs)")


if __name__ == "__main__":
    raise SystemExit(main())
