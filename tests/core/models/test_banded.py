"""The U-Net's full-resolution end in bands of rows: the same logits, less memory traffic."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from napari_fibsem.core.models import create_model
from napari_fibsem.core.models.fast_cpu import inference_module
from napari_fibsem.core.models.fast_cpu.banded import BandedUnet, banded_unet


def _net(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return create_model("Unet", "resnet18", device="cpu", **kwargs).torch_module


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.fixture(scope="module")
def rewritten():
    """An inference copy (folded, polyphase) without bands, and a random input batch of two."""
    net = inference_module(_net(), winograd=False, bands=False)
    x = torch.rand(2, 1, 128, 160, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = net(x)
    return net, x, want


@pytest.mark.parametrize("band_rows", [1, 2, 5, 13, None])
def test_any_band_height_gives_the_unbanded_logits(rewritten, band_rows):
    net, x, want = rewritten
    banded = banded_unet(copy.deepcopy(net), band_rows=band_rows)
    assert isinstance(banded, BandedUnet) and banded.halo == 2
    with torch.inference_mode():
        got = banded(x)
        probs = banded.probabilities(x)
    assert got.shape == want.shape == (2, 6, 128, 160)
    assert _rel_err(got, want) < 1e-5
    assert probs.is_contiguous()
    assert float((probs - torch.softmax(want, dim=1)).abs().max()) < 1e-5


def test_a_smaller_halo_would_be_wrong(rewritten):
    """The halo is as small as it can be: one row less lets the cut edges' padding into kept rows."""
    net, x, want = rewritten
    halo = banded_unet(copy.deepcopy(net)).halo
    with torch.inference_mode():
        short = BandedUnet(copy.deepcopy(net), halo=halo - 1, band_rows=3)(x)
    assert _rel_err(short, want) > 1e-3


def test_inputs_not_padded_to_the_stride_run_unbanded():
    net = inference_module(_net(), winograd=False, bands=False)
    banded = banded_unet(copy.deepcopy(net), band_rows=1)
    x = torch.rand(1, 1, 100, 116, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        want, got = net(x), banded(x)
    assert got.shape == want.shape and _rel_err(got, want) < 1e-5


def test_tails_it_cannot_vouch_for_are_left_alone():
    scse = inference_module(_net(decoder_attention_type="scse"), bands=False)
    assert banded_unet(scse) is None  # squeeze-excitation pools over the whole image
    upsampling = inference_module(_net(), bands=False)
    upsampling.segmentation_head[1] = nn.Upsample(scale_factor=2)
    assert banded_unet(upsampling) is None
    unrewritten = _net().eval()  # decoder blocks not polyphase: their reach is not computed here
    assert banded_unet(unrewritten) is None
    torch.manual_seed(0)
    fpn = create_model("FPN", "resnet18", device="cpu").torch_module
    assert banded_unet(inference_module(fpn, bands=False)) is None


def test_cpu_predict_uses_bands_and_matches_without():
    torch.manual_seed(0)
    fast = create_model("Unet", "resnet18", device="cpu")
    plain = create_model("Unet", "resnet18", device="cpu", bands=False)
    plain.torch_module.load_state_dict(fast.torch_module.state_dict())
    net = fast._inference_net()
    assert isinstance(net, BandedUnet) and net.band_rows is None  # bands sized by BAND_BYTES, not the probe's 1 row
    assert not isinstance(plain._inference_net(), BandedUnet)
    assert not isinstance(inference_module(fast.torch_module), BandedUnet)  # what ONNX export gets
    image = (np.random.default_rng(0).random((200, 296)) * 255).astype(np.uint8)
    a, b = fast.predict(image), plain.predict(image)
    assert np.abs(a.probs - b.probs).max() < 1e-5
    assert (a.mask == b.mask).mean() > 0.999
