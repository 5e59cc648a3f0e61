"""The fast CPU path as a whole: numba optional, no process-wide setting changed on import."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest
import torch

from napari_fibsem.core.models.fast_cpu import winograd
from napari_fibsem.core.models.fast_cpu.winograd import WinogradConv3x3


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (process-wide state: imported modules, numba's pool)."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_without_numba_the_rewritten_network_equals_the_plain_one():
    """numba unimportable: the kernels are reported missing (naming the extra), Winograd falls back
    to the torch transforms and the rewritten U-Net still gives the plain network's logits."""
    out = _python(
        """
        import sys, warnings
        sys.modules["numba"] = None  # import numba now raises ImportError
        import torch
        from napari_fibsem.core.models import create_model
        from napari_fibsem.core.models.fast_cpu import banded, inference_module, winograd

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert winograd._kernels() is None
        assert any("napari-fibsem[fast]" in str(w.message) for w in caught), [str(w.message) for w in caught]
        winograd.MIN_CHANNELS_TORCH = 64  # so the tiny U-Net has layers for the torch transforms
        torch.manual_seed(0)
        net = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8)).torch_module
        fast = inference_module(net, winograd=True, bands=True)
        swapped = sum(isinstance(m, winograd.WinogradConv3x3) for m in fast.modules())
        assert swapped > 0 and isinstance(fast, banded.BandedUnet), (swapped, type(fast))
        x = torch.rand(2, 1, 64, 96)
        with torch.inference_mode():
            want, got = net.eval()(x), fast(x)
        print(float((got - want).abs().max() / want.abs().max()))
        """
    )
    assert float(out) < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed")
def test_importing_changes_no_numba_setting_and_first_use_picks_openmp():
    out = _python(
        """
        import os
        os.environ.pop("NUMBA_THREADING_LAYER", None)
        import numba
        before = (numba.config.THREADING_LAYER, numba.get_num_threads())
        import napari_fibsem.core.models.export
        import napari_fibsem.core.models.fast_cpu
        import napari_fibsem.core.models.fast_cpu._winograd_kernels
        import napari_fibsem.core.models.smp_backend
        assert (numba.config.THREADING_LAYER, numba.get_num_threads()) == before, before
        from napari_fibsem.core.models.fast_cpu import winograd
        if winograd._kernels() is not None:  # the pool runs on OpenMP, the setting is back as it was
            assert numba.threading_layer() == "omp" and numba.config.THREADING_LAYER == before[0]
        print("ok")
        """
    )
    assert out.endswith("ok")


@pytest.mark.skipif(winograd._kernels() is None, reason="numba kernels unavailable")
def test_a_kernel_call_restores_the_callers_numba_thread_count():
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        conv = torch.nn.Conv2d(16, 16, 3, padding=1)
        x = torch.randn(1, 16, 12, 12).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            WinogradConv3x3(conv)(x)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(previous)
