"""Faster CPU inference for smp networks: exact rewrites of the same weights.

One entry point, :func:`inference_module`, returns an eval-mode copy of a network with

* BatchNorm folded into the preceding convolution (``fold``),
* U-Net decoder blocks computed polyphase, without the upsampled tensor (``polyphase``),
* optionally the wide 3x3 convolutions computed with Winograd F(4x4, 3x3) (``winograd``; its
  transforms use numba from the ``fast`` extra when installed, torch operations otherwise),
* optionally the U-Net's full-resolution end and softmax run in bands of rows (``banded``),

and checks the copy against the plain network on a probe input: a rewrite that changes the
output is refused and the plain network returned. Only the rewritten copy changes; the layer
shapes these rewrites recognise (and every smp internal they rely on) live in ``layers``.
``benchmarks/inference.py`` measures what each step saves.
"""

from napari_fibsem.core.models.fast_cpu.pipeline import inference_module

__all__ = ["inference_module"]
