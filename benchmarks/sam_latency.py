"""SAM / MobileSAM interactivity: embedding time, prompt -> mask latency, cache, prefetch wait.

All in one process on the CPU, randomly initialised weights (nothing is downloaded; timings do
not depend on the weights' values):

1. embedding time per image: ``SamService.embed`` (cold) next to ``SamPredictor.set_image``;
2. prompt -> mask (one positive point): ``SamService.predict`` next to ``SamPredictor.predict``
   out of the box (``multimask_output=True``: three masks) and with ``multimask_output=False``,
   interleaved, medians after warm-up, on the same embedding; plus the agreement of the masks;
3. revisiting a cached image: encoder runs (must be 0) from RAM and from the disk cache;
4. the wait for the next image's mask-ready state when the person navigates after spending
   ``--person-time`` x one cold embedding on the current image (clicking a prompt every
   ``--click-every`` seconds meanwhile), with ``prefetch`` of the next image vs without.

    python benchmarks/sam_latency.py            # 1024x1536, vit_t and vit_b (a few minutes)
    python benchmarks/sam_latency.py --quick    # 256x384, vit_t only (< 1 minute)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence

import numpy as np

MIN_IOU = 0.98


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def test_image(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A uint8 frame with smooth bright/dark regions, a bar, texture and shot noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    img = 80 + 30 * np.sin(xx / w * 3 + seed) * np.cos(yy / h * 2)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.2) * min(h, w)
        img += rng.choice([-50, 70]) * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
    x0 = int(rng.uniform(0.2, 0.7) * w)
    img[:, x0: x0 + w // 12] += 60
    img += rng.normal(0, 10, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _reference_on(predictor, emb) -> None:
    """Point SamPredictor at our embedding so both decoders see identical features."""
    predictor.features, predictor.original_size, predictor.input_size = emb.features, emb.original_size, emb.input_size
    predictor.is_image_set = True


def bench_embedding(model, image: np.ndarray, cache_dir: str, repeats: int) -> tuple[float, float, object]:
    from napari_fibsem.core.sam.service import SamService, reference_predictor

    ours, ref = [], []
    emb = None
    predictor = reference_predictor(model)
    rgb = np.repeat(image[..., None], 3, axis=2)
    for i in range(repeats):
        service = SamService(model, cache_dir=os.path.join(cache_dir, f"cold{i}"))
        t0 = time.perf_counter()
        emb = service.embed(image)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        predictor.set_image(rgb)
        ref.append(time.perf_counter() - t0)
    return statistics.median(ours), statistics.median(ref), emb


def bench_prompts(model, emb, repeats: int, warmup: int = 3) -> dict[str, float]:
    from napari_fibsem.core.sam.service import SamService, reference_predictor

    service = SamService(model, disk_cache=False)
    predictor = reference_predictor(model)
    _reference_on(predictor, emb)
    h, w = emb.original_size
    point = (0.55 * w, 0.45 * h)
    pts, labs = np.array([point]), np.array([1])
    t0 = time.perf_counter()
    service.predict(emb, [point], [1])  # first prompt on this embedding: includes its preparation
    first = time.perf_counter() - t0
    runs = {"ours": [], "ours_multi": [], "ref_default": [], "ref_single": []}
    calls = {
        "ours": lambda: service.predict(emb, [point], [1]),
        "ours_multi": lambda: service.predict(emb, [point], [1], multimask=True),
        "ref_default": lambda: predictor.predict(pts, labs),
        "ref_single": lambda: predictor.predict(pts, labs, multimask_output=False),
    }
    for i in range(warmup + repeats):
        for name, call in calls.items():  # interleaved: a noisy neighbour slows all alike
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                runs[name].append(time.perf_counter() - t0)
    out = {name: statistics.median(v) for name, v in runs.items()}
    out["first"] = first
    ours = service.predict(emb, [point], [1])
    ref_masks, _, ref_low = predictor.predict(pts, labs, multimask_output=False)
    ref = ref_masks[0]
    out["iou"] = float((ours.mask & ref).sum() / max(1, (ours.mask | ref).sum()))
    out["fraction"] = float(ref.mean())
    vh, vw = -(-emb.input_size[0] // 4), -(-emb.input_size[1] // 4)
    out["max_logit_diff"] = float(np.abs(ours.low_res_logits[:vh, :vw] - ref_low[0, :vh, :vw]).max())
    box = (0.3 * w, 0.3 * h, 0.7 * w, 0.6 * h)
    ours_box = service.predict(emb, box=box)
    ref_box = predictor.predict(box=np.array(box), multimask_output=False)[0][0]
    out["iou_box"] = float((ours_box.mask & ref_box).sum() / max(1, (ours_box.mask | ref_box).sum()))
    return out


def bench_revisit(model, image: np.ndarray, cache_dir: str) -> dict[str, float]:
    from napari_fibsem.core.sam.service import SamService

    folder = os.path.join(cache_dir, "revisit")
    first = SamService(model, cache_dir=folder)
    first.embed(image)
    t0 = time.perf_counter()
    first.embed(image)
    ram = time.perf_counter() - t0
    fresh = SamService(model, cache_dir=folder)  # a new session: RAM empty, disk cache warm
    t0 = time.perf_counter()
    fresh.embed(image)
    disk = time.perf_counter() - t0
    return {"ram_s": ram, "disk_s": disk, "runs": first.encoder_runs - 1 + fresh.encoder_runs}


def bench_next_image(model, images: Sequence[np.ndarray], cold: float, person_factor: float,
                     click_every: float, cache_dir: str, prefetch: bool) -> dict[str, float]:
    """Person on image 0 for person_factor x cold seconds (clicking), then opens image 1."""
    from napari_fibsem.core.sam.service import SamService

    service = SamService(model, cache_dir=os.path.join(cache_dir, f"next-{prefetch}-{person_factor}"))
    current = service.embed(images[0])
    if prefetch:
        service.prefetch(images[1:], tags=list(range(1, len(images))))
    h, w = current.original_size
    clicks = []
    start = time.perf_counter()
    while time.perf_counter() - start < person_factor * cold:
        t0 = time.perf_counter()
        service.predict(current, [(0.5 * w, 0.5 * h)], [1])
        clicks.append(time.perf_counter() - t0)
        time.sleep(max(0.0, click_every - (time.perf_counter() - t0)))
    t0 = time.perf_counter()
    service.embed(images[1])
    wait = time.perf_counter() - t0
    service.close()
    return {"wait": wait, "click_median": statistics.median(clicks) if clicks else float("nan"), "clicks": len(clicks)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="256x384, vit_t only, few repeats (a smoke run)")
    parser.add_argument("--size", type=parse_size, default=None, help="image HxW (default 1024x1536)")
    parser.add_argument("--models", default=None, help="comma-separated model types (default vit_t,vit_b)")
    parser.add_argument("--prefetch-model", default="vit_t", help="model for the next-image scenario")
    parser.add_argument("--repeats", type=int, default=None, help="prompt timing repeats (default 20)")
    parser.add_argument("--embed-repeats", type=int, default=1, help="cold embeddings timed per model")
    parser.add_argument("--person-time", default=None, help="comma-separated multiples of a cold embedding")
    parser.add_argument("--click-every", type=float, default=0.5, help="seconds between the person's prompts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    size = args.size or ((256, 384) if args.quick else (1024, 1536))
    models = (args.models or ("vit_t" if args.quick else "vit_t,vit_b")).split(",")
    repeats = args.repeats or (5 if args.quick else 20)
    person = [float(v) for v in (args.person_time or ("1.0" if args.quick else "1.0,1.5")).split(",")]

    import torch

    from napari_fibsem.core.sam.service import load_sam

    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), python {platform.python_version()}")
    print(f"image {size[0]}x{size[1]} uint8, random weights, CPU")
    images = [test_image(size, seed) for seed in range(2)]
    ok = True
    with tempfile.TemporaryDirectory() as cache_dir:
        loaded = {}
        for model_type in dict.fromkeys([*models, args.prefetch_model]):
            torch.manual_seed(0)
            t0 = time.perf_counter()
            loaded[model_type] = load_sam(None, model_type, device="cpu", random_weights=True)
            print(f"{model_type}: built in {time.perf_counter() - t0:.1f} s")
        colds = {}
        for model_type in models:
            model = loaded[model_type]
            ours, ref, emb = bench_embedding(model, images[0], cache_dir, args.embed_repeats)
            colds[model_type] = ours
            print(f"embedding {model_type}: SamService.embed {ours:.2f} s, SamPredictor.set_image {ref:.2f} s")
            p = bench_prompts(model, emb, repeats)
            print(f"prompt -> mask {model_type} (1 point): ours {p['ours'] * 1e3:.1f} ms "
                  f"(multimask {p['ours_multi'] * 1e3:.1f} ms, first on a new embedding {p['first'] * 1e3:.1f} ms); "
                  f"SamPredictor.predict out of the box {p['ref_default'] * 1e3:.1f} ms -> "
                  f"{p['ref_default'] / p['ours']:.2f}x, single mask {p['ref_single'] * 1e3:.1f} ms -> "
                  f"{p['ref_single'] / p['ours']:.2f}x")
            print(f"agreement {model_type}: mask IoU vs SamPredictor {p['iou']:.4f} (point, mask covers "
                  f"{p['fraction']:.1%}), {p['iou_box']:.4f} (box); max |low-res logit diff| {p['max_logit_diff']:.1e}")
            ok &= min(p["iou"], p["iou_box"]) >= MIN_IOU
        model = loaded[args.prefetch_model]
        r = bench_revisit(model, images[0], cache_dir)
        print(f"cached revisit {args.prefetch_model}: encoder runs {r['runs']} "
              f"(RAM {r['ram_s'] * 1e3:.2f} ms, disk cache {r['disk_s'] * 1e3:.1f} ms)")
        ok &= r["runs"] == 0
        cold = colds.get(args.prefetch_model) or bench_embedding(model, images[0], cache_dir, 1)[0]
        for factor in person:
            with_p = bench_next_image(model, images, cold, factor, args.click_every, cache_dir, prefetch=True)
            without = bench_next_image(model, images, cold, factor, args.click_every, cache_dir, prefetch=False)
            print(f"next image wait {args.prefetch_model} (person {factor:g}x the first cold embedding, {cold:.2f} s): "
                  f"with prefetch {with_p['wait']:.3f} s = {with_p['wait'] / without['wait']:.1%} of a cold "
                  f"embedding; without {without['wait']:.2f} s (the cold embedding); prompts while prefetching "
                  f"{with_p['click_median'] * 1e3:.0f} ms (idle {without['click_median'] * 1e3:.0f} ms), "
                  f"{with_p['clicks']} clicks")
    if not ok:
        print(f"FAILED: mask agreement below IoU {MIN_IOU} or a cached revisit ran the encoder", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
