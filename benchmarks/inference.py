"""CPU inference speed: our ``predict`` against a plain eager PyTorch forward pass, same process.

The baseline is what a script would do by hand: ``softmax(model(image / 255))`` in float32,
default (NCHW) memory layout, eager mode, then the argmax mask (numpy's, which is ~20x faster
here than ``torch.argmax(dim=1)``; the slower one would flatter every ratio below). Each candidate
is the full ``predict`` pipeline (normalise, pad, infer, softmax, crop, argmax) on the same
uint8 image and the same random weights (``encoder_weights=None``: nothing is downloaded).

Rows: ``smp`` (torch) without and with the inference rewrites (BatchNorm folding, polyphase
U-Net decoder, then Winograd F(4x4, 3x3) for the wide 3x3 convolutions, then the full-resolution
end of the U-Net and the softmax in bands of rows), and the ONNX export on ONNX Runtime and, if
installed, OpenVINO. For each: the
median time over ``--repeats`` runs after warm-up (runs are interleaved across candidates so
that a noisy neighbour slows all of them alike), the speed-up over the baseline, the largest
``|prob - eager prob|`` (must stay <= 1e-3) and the share of mask pixels equal to the eager mask.

    python benchmarks/inference.py            # 1024x1536, U-Net resnet34 (the reported figure)
    python benchmarks/inference.py --quick    # 256x384 smoke run, well under a minute
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROB_TOLERANCE = 1e-3
TARGET_RATIO = 2.0


@dataclass
class Row:
    name: str
    times: list[float] = field(default_factory=list)
    setup_s: float = 0.0
    max_prob_diff: float = 0.0
    mask_agreement: float = 1.0

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def test_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A uint8 frame with structure at several scales (smooth blobs + texture + shot noise)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    img = np.zeros(shape, np.float32)
    for cell, weight in ((64, 1.0), (16, 0.4), (4, 0.15)):
        small = rng.random((h // cell + 2, w // cell + 2), dtype=np.float32)
        img += weight * np.kron(small, np.ones((cell, cell), np.float32))[:h, :w]
    img += 0.1 * rng.standard_normal(shape, dtype=np.float32)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="256x384 image, 3 repeats: a smoke run")
    p.add_argument("--tiny", action="store_true", help="resnet18, encoder depth 3, small decoder (tests)")
    p.add_argument("--size", type=parse_size, default=None, help="HEIGHTxWIDTH (default 1024x1536)")
    p.add_argument("--encoder", default="resnet34")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per candidate (default 7)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 2)")
    p.add_argument("--threads", type=int, default=None, help="threads for torch and the runtimes")
    p.add_argument(
        "--runtimes",
        default="onnxruntime,openvino",
        help="ONNX runtimes to try, comma-separated (missing ones are skipped)",
    )
    args = p.parse_args(argv)
    if args.size is None:
        args.size = (256, 384) if args.quick else (1024, 1536)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = build_args(argv)
    import torch

    from napari_fibsem.core.models import create_model, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kwargs = {"encoder_depth": 3, "decoder_channels": (32, 16, 8)} if args.tiny else {}
    encoder = "resnet18" if args.tiny else args.encoder
    fast = create_model("Unet", encoder, device="cpu", **kwargs)
    image = test_image(args.size)
    print(
        f"U-Net {encoder}{' (tiny)' if args.tiny else ''}, random weights, {image.shape[0]}x{image.shape[1]} "
        f"uint8, CPU: {cpu_name()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}"
    )
    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for mod in ("onnxruntime", "openvino"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    print(", ".join(versions))

    # -- baseline: plain eager float32, NCHW ---------------------------------------------------
    eager = create_model("Unet", encoder, device="cpu", channels_last=False, optimize=False, **kwargs)
    eager.torch_module.load_state_dict(fast.torch_module.state_dict())
    net = eager.torch_module.eval()

    def baseline() -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]
            probs = torch.softmax(net(x), dim=1)[0].numpy()
        return np.argmax(probs, axis=0).astype(np.uint8), probs

    # -- candidates ----------------------------------------------------------------------------
    candidates: list[tuple[Row, Callable[[], tuple[np.ndarray, np.ndarray]]]] = []

    def add(name: str, model, setup_s: float) -> None:
        def run() -> tuple[np.ndarray, np.ndarray]:
            pred = model.predict(image)
            return pred.mask, pred.probs

        candidates.append((Row(name, setup_s=setup_s), run))

    def add_smp(name: str, **options: bool) -> None:
        """``fast`` itself, or a copy of its weights with some inference rewrites switched off."""
        model = fast
        if options:
            model = create_model("Unet", encoder, device="cpu", **options, **kwargs)
            model.torch_module.load_state_dict(fast.torch_module.state_dict())
        t0 = time.perf_counter()
        if options.get("optimize", True):
            model._inference_net()  # what the first predict would build
        add(name, model, time.perf_counter() - t0)

    add_smp("smp predict, channels_last only", optimize=False)
    add_smp("smp predict, folded+polyphase", winograd=False)
    add_smp("smp predict, +Winograd", bands=False)
    add_smp("smp predict, +bands (default)")

    tmp = tempfile.TemporaryDirectory(prefix="napari-fibsem-bench-")
    onnx_path = Path(tmp.name) / "model.onnx"
    try:
        from napari_fibsem.core.models.export import export_onnx

        t0 = time.perf_counter()
        export_onnx(fast, onnx_path)
        export_s = time.perf_counter() - t0
        print(f"ONNX export: {export_s:.2f} s, {onnx_path.stat().st_size / 1e6:.1f} MB")
    except ImportError as e:
        print(f"ONNX export skipped: {e}")
        export_s = None
    if export_s is not None:
        for runtime in [r.strip() for r in args.runtimes.split(",") if r.strip()]:
            try:
                t0 = time.perf_counter()
                model = load_model(onnx_path, runtime=runtime, threads=args.threads)
                add(f"onnx predict, {runtime}", model, time.perf_counter() - t0)
            except ImportError:
                print(f"{runtime}: not installed, skipped")

    # -- timing: warm-up, then interleaved timed rounds -----------------------------------------
    base_row = Row("eager fp32 forward+softmax+argmax (baseline)")
    ref_mask, ref_probs = baseline()
    for _ in range(args.warmup):
        baseline()
        for _, run in candidates:
            run()
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        baseline()
        base_row.times.append(time.perf_counter() - t0)
        for row, run in candidates:
            t0 = time.perf_counter()
            mask, probs = run()
            row.times.append(time.perf_counter() - t0)
            row.max_prob_diff = max(row.max_prob_diff, float(np.abs(probs - ref_probs).max()))
            row.mask_agreement = float((mask == ref_mask).mean())
    tmp.cleanup()

    # -- report ---------------------------------------------------------------------------------
    print(f"\nmedian of {args.repeats} runs after {args.warmup} warm-up run(s)")
    header = f"{'':46s} {'time s':>8s} {'speed-up':>9s} {'max|dp|':>9s} {'mask eq':>8s} {'setup s':>8s}"
    print(header)
    print(f"{base_row.name:46s} {base_row.median:8.3f} {1.0:8.2f}x {0.0:9.1e} {1.0:8.5f} {'':>8s}")
    ok = True
    for row, _ in candidates:
        ratio = base_row.median / row.median
        flag = "" if row.max_prob_diff <= PROB_TOLERANCE else "  <-- probabilities off by more than 1e-3"
        ok &= row.max_prob_diff <= PROB_TOLERANCE
        print(
            f"{row.name:46s} {row.median:8.3f} {ratio:8.2f}x {row.max_prob_diff:9.1e} "
            f"{row.mask_agreement:8.5f} {row.setup_s:8.2f}{flag}"
        )
    best = min((row for row, _ in candidates), key=lambda r: r.median)
    ratio = base_row.median / best.median
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"\nfastest: {best.name}: {ratio:.2f}x the eager baseline (target {TARGET_RATIO:.0f}x: {verdict})")
    if not ok:
        print("FAIL: a candidate's probabilities differ from eager by more than 1e-3", file=sys.stderr)
    return [base_row] + [row for row, _ in candidates]


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rows = main()
    sys.exit(0 if all(r.max_prob_diff <= PROB_TOLERANCE for r in rows) else 1)
