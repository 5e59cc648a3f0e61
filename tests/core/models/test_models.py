"""SegmentationModel predict: shapes, dtypes, normalisation, padding and tiling (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_fibsem.core._optional import require
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models import (
    Normalization,
    Prediction,
    SegmentationModel,
    SmpModel,
    TiledSegmentationModel,
    create_model,
)
from napari_fibsem.core.models.tiling import blend_window, crop_pads, pad_to_multiple, tile_starts


def tiny_model(**kwargs) -> SmpModel:
    torch.manual_seed(0)
    return create_model(
        "Unet", "resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), device="cpu", **kwargs
    )


@pytest.fixture(scope="module")
def model() -> SmpModel:
    return tiny_model()


def smooth_image(shape: tuple[int, int], seed: int = 0, dtype=np.uint8) -> np.ndarray:
    """Blobs rather than white noise, so predictions have structure like a real frame."""
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 8 + 2, shape[1] // 8 + 2))
    big = np.kron(small, np.ones((8, 8)))[: shape[0], : shape[1]]
    big = big + 0.1 * rng.random(shape)
    big = (big - big.min()) / (big.max() - big.min())
    return (big * np.iinfo(dtype).max).astype(dtype)


# -- interface ---------------------------------------------------------------------------------
def test_model_exposes_interface(model):
    assert isinstance(model, SegmentationModel)
    assert model.num_classes == 6
    assert model.class_map == ClassMap.default()
    assert model.device == "cpu"
    assert isinstance(model.torch_module, torch.nn.Module)
    assert model.stride == 8
    assert model.backend == "smp"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(37, 53), (64, 96), (1, 17), (8, 5)])
def test_predict_any_size_and_dtype(model, shape, dtype):
    image = smooth_image(shape, dtype=dtype) if min(shape) > 8 else np.full(shape, 7, dtype=dtype)
    pred = model.predict(image)
    assert isinstance(pred, Prediction)
    assert pred.mask.shape == shape and pred.mask.dtype == np.uint8
    assert pred.probs.shape == (6, *shape) and pred.probs.dtype == np.float32
    np.testing.assert_allclose(pred.probs.sum(axis=0), 1.0, atol=1e-5)
    assert np.all(pred.probs >= 0)
    np.testing.assert_array_equal(pred.mask, np.argmax(pred.probs, axis=0))


def test_uint16_fixed_normalisation_matches_uint8(model):
    # fixed mode divides by the dtype max: x*257 in uint16 is exactly x/255 after scaling.
    img8 = smooth_image((40, 48))
    p8 = model.predict(img8)
    p16 = model.predict(img8.astype(np.uint16) * 257)
    np.testing.assert_allclose(p16.probs, p8.probs, atol=1e-5)


def test_percentile_normalisation_is_gain_invariant():
    m = tiny_model(normalization=Normalization(mode="percentile", low=1, high=99))
    img = smooth_image((40, 48), dtype=np.uint16) // 16
    a = m.predict(img).probs
    b = m.predict(img * 8).probs
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_channel_axis_accepted_and_bad_shapes_rejected(model):
    img = smooth_image((32, 40))
    np.testing.assert_allclose(model.predict(img[None]).probs, model.predict(img).probs, atol=1e-6)
    with pytest.raises(ValueError, match="2D grayscale"):
        model.predict(np.zeros((3, 32, 40), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        model.predict(np.zeros((0, 40), np.uint8))


def test_predict_batch_matches_single_and_keeps_order(model):
    images = [smooth_image((37, 53), 1), smooth_image((64, 96), 2), smooth_image((37, 53), 3)]
    batch = model.predict_batch(images)
    assert [p.mask.shape for p in batch] == [(37, 53), (64, 96), (37, 53)]
    for img, pred in zip(images, batch, strict=True):
        np.testing.assert_allclose(pred.probs, model.predict(img).probs, atol=1e-5)


def test_predict_uses_eval_mode_and_restores_training_mode():
    m = tiny_model()
    m.torch_module.train()
    img = smooth_image((32, 32))
    a = m.predict(img).probs
    assert m.torch_module.training  # restored
    b = m.predict(img).probs  # BN running stats untouched by inference
    np.testing.assert_array_equal(a, b)


# -- padding and tiling ------------------------------------------------------------------------
def test_pad_and_crop_round_trip():
    img = np.arange(37 * 53, dtype=np.float32).reshape(37, 53)
    padded, pads = pad_to_multiple(img, 32)
    assert padded.shape == (64, 64)
    np.testing.assert_array_equal(crop_pads(padded, pads), img)
    # reflect, not zeros: the border continues the image
    assert padded[pads[0] - 1, pads[2]] == img[1, 0]


@pytest.mark.parametrize(
    "length,tile,overlap,stride", [(200, 64, 16, 8), (512, 128, 32, 32), (96, 64, 0, 8), (1000, 256, 100, 32)]
)
def test_tile_starts_cover_with_overlap(length, tile, overlap, stride):
    starts = tile_starts(length, tile, overlap, stride)
    assert starts[0] == 0 and starts[-1] == length - tile
    assert all(s % stride == 0 for s in starts[:-1])
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        assert b > a and a + tile - b >= overlap


def test_blend_window_untapered_at_borders():
    w = blend_window(64, 16, taper_start=False, taper_end=True)
    assert w[0] == 1.0 and w[:48].min() == 1.0
    assert 0 < w[-1] < 0.05 and np.all(np.diff(w[48:]) <= 0)


class PixelwiseModel(TiledSegmentationModel):
    """Per-pixel softmax of a linear function: no context, so tiling must be exact."""

    backend = "pixelwise"

    def __init__(self, tile_size: int) -> None:
        self.class_map = ClassMap.from_names(["a", "b", "c"])
        self.normalization = Normalization()
        self.stride = 16
        self.tile_size = tile_size
        self.calls: list[tuple[int, ...]] = []

    def _infer(self, batch):
        self.calls.append(batch.shape)
        logits = np.concatenate([batch * k for k in (-3.0, 0.5, 4.0)], axis=1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_tiled_blending_is_exact_for_context_free_model():
    img = smooth_image((150, 230))
    whole = PixelwiseModel(tile_size=1024).predict(img)
    tiled_model = PixelwiseModel(tile_size=64)
    tiled = tiled_model.predict(img)
    assert max(s[-1] for s in tiled_model.calls) == 64  # really tiled
    np.testing.assert_allclose(tiled.probs, whole.probs, atol=1e-6)
    np.testing.assert_array_equal(tiled.mask, whole.mask)


def test_tiled_prediction_matches_untiled_smp():
    m = tiny_model()
    img = smooth_image((192, 288), seed=5)
    whole = m.predict(img)
    m.tile_size, m.tile_overlap = 128, 0.5
    tiled = m.predict(img)
    assert tiled.probs.shape == whole.probs.shape
    np.testing.assert_allclose(tiled.probs.sum(axis=0), 1.0, atol=1e-5)
    diff = np.abs(tiled.probs - whole.probs)
    assert diff.max() < 0.1 and diff.mean() < 0.005
    # A random-weight net has many near-ties, where any tiny difference flips the argmax; where
    # the untiled prediction has a margin, tiling must agree.
    top2 = np.sort(whole.probs, axis=0)[-2:]
    decided = (top2[1] - top2[0]) > 0.02
    assert decided.mean() > 0.7
    assert (tiled.mask == whole.mask)[decided].mean() > 0.995
    assert (tiled.mask == whole.mask).mean() > 0.98


# -- normalisation & optional deps -------------------------------------------------------------
def test_normalisation_validation_and_round_trip():
    n = Normalization(mode="percentile", mean=0.5, std=0.25, low=2, high=98)
    assert Normalization.from_dict(n.to_dict()) == n
    with pytest.raises(ValueError, match="unknown normalisation keys"):
        Normalization.from_dict({"mode": "fixed", "sdt": 1})
    with pytest.raises(ValueError, match="mode"):
        Normalization(mode="zscore")  # type: ignore[arg-type]
    x = Normalization(mean=0.5, std=0.5).apply(np.array([[0, 255]], np.uint8))
    np.testing.assert_allclose(x, [[-1.0, 1.0]])


def test_require_names_the_extra():
    assert require("json", "anything").dumps([]) == "[]"
    with pytest.raises(ImportError, match=r"pip install napari-fibsem\[sam\]"):
        require("surely_not_a_module_xyz", "sam")
