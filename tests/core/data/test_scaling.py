"""Input scale: models that see their images smaller than they are still return full-size masks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_fibsem.core.data.dataset import SegmentationDataset, discover
from napari_fibsem.core.data.scaling import (
    _linear_matrix,
    _separable,
    check_input_scale,
    resize_image,
    resize_labels,
    resize_probs,
    scaled_shape,
)
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models import BundleMetadata, ModelLoadError, create_model, load_model, read_bundle
from napari_fibsem.core.synthetic.dataset import write_dataset
from napari_fibsem.core.training import TrainingConfig, train

TINY = dict(encoder_depth=3, decoder_channels=(32, 16, 8))


def tiny_model(**kwargs):
    torch.manual_seed(0)
    return create_model("Unet", "resnet18", device="cpu", **TINY, **kwargs)


def smooth_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 8 + 2, shape[1] // 8 + 2))
    big = np.kron(small, np.ones((8, 8)))[: shape[0], : shape[1]] + 0.1 * rng.random(shape)
    return ((big - big.min()) / (big.max() - big.min()) * 255).astype(np.uint8)


# -- resizing helpers ----------------------------------------------------------------------------
def test_area_downscale_is_the_block_mean_and_keeps_dtype():
    img = np.random.default_rng(0).integers(0, 65536, (40, 60)).astype(np.uint16)
    half = resize_image(img, (20, 30))
    assert half.dtype == np.uint16 and half.shape == (20, 30)
    blocks = img.astype(np.float64).reshape(20, 2, 30, 2).mean(axis=(1, 3))
    np.testing.assert_array_equal(half, np.rint(blocks).astype(np.uint16))
    # any factor: a constant image stays constant, and the mean is kept
    flat = resize_image(np.full((37, 53), 0.25, np.float32), scaled_shape((37, 53), 0.3))
    assert flat.shape == (11, 16)
    np.testing.assert_allclose(flat, 0.25, rtol=1e-6)
    ramp = np.tile(np.arange(99, dtype=np.float32), (10, 1))
    np.testing.assert_allclose(resize_image(ramp, (10, 33)).mean(), ramp.mean(), rtol=1e-5)


def test_labels_resize_by_nearest_and_probs_stay_normalised():
    mask = np.kron(np.arange(12, dtype=np.uint8).reshape(3, 4), np.ones((4, 4), np.uint8))
    small = resize_labels(mask, (6, 8))
    np.testing.assert_array_equal(small, np.kron(np.arange(12).reshape(3, 4), np.ones((2, 2))))
    assert set(np.unique(resize_labels(mask, (5, 7)))) <= set(range(12))
    probs = np.random.default_rng(1).random((4, 9, 13)).astype(np.float32)
    probs /= probs.sum(axis=0)
    big = resize_probs(probs, (31, 40))
    assert big.shape == (4, 31, 40) and big.dtype == np.float32
    np.testing.assert_allclose(big.sum(axis=0), 1.0, atol=1e-5)
    assert big.min() >= probs.min() - 1e-6 and big.max() <= probs.max() + 1e-6
    # torch's kernel (used when installed) and the numpy fallback agree
    fallback = _separable(probs, _linear_matrix(31, 9), _linear_matrix(40, 13))
    np.testing.assert_allclose(big, fallback, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), "half"])
def test_input_scale_must_be_in_zero_one(bad):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        check_input_scale(bad)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        tiny_model(input_scale=bad)


# -- predict ---------------------------------------------------------------------------------------
def test_bundle_with_input_scale_predicts_full_size_masks(tmp_path):
    model = tiny_model(input_scale=0.5)
    path = model.save(tmp_path / "half.pt")
    assert read_bundle(path)[0].input_scale == 0.5
    loaded = load_model(path, device="cpu")
    assert loaded.input_scale == 0.5 and "input_scale=0.5" in repr(loaded)
    seen = []
    loaded.torch_module.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    loaded._optimize = False  # run the module itself, so the hook sees its input

    img = smooth_image((93, 130))
    pred = loaded.predict(img)
    assert pred.mask.shape == (93, 130) and pred.probs.shape == (6, 93, 130)
    np.testing.assert_allclose(pred.probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pred.mask, pred.probs.argmax(axis=0))
    assert seen == [(1, 1, 48, 72)]  # 47x65 padded to the stride (8), not 93x130

    # the same as resizing by hand and asking a full-scale copy of the network
    plain = tiny_model()
    plain.torch_module.load_state_dict(loaded.torch_module.state_dict())
    small = plain.predict(resize_image(img, (47, 65)))
    np.testing.assert_allclose(pred.probs, resize_probs(small.probs, (93, 130)), atol=1e-5)


def test_old_bundles_default_to_full_scale_and_bad_values_are_named(tmp_path):
    meta = tiny_model().metadata.to_dict()
    del meta["input_scale"]
    assert BundleMetadata.from_dict(meta).input_scale == 1.0
    meta["input_scale"] = 2
    with pytest.raises(ModelLoadError, match=r"odd\.pt: invalid bundle metadata: input_scale must be in"):
        BundleMetadata.from_dict(meta, source="odd.pt")


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="needs onnx and onnxruntime",
)
def test_onnx_export_carries_the_input_scale(tmp_path):
    from napari_fibsem.core.models.export import export_onnx

    model = tiny_model(input_scale=0.5)
    path = export_onnx(model, tmp_path / "half.onnx")
    onnx_model = load_model(path, runtime="onnxruntime")
    assert onnx_model.input_scale == 0.5
    img = smooth_image((70, 90), seed=3)
    a, b = onnx_model.predict(img), model.predict(img)
    assert a.mask.shape == (70, 90)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)


# -- training --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scaled") / "ds"
    write_dataset(folder, n=4, size=(64, 96), seed=0)
    return folder


def test_config_validates_input_scale(scenes):
    assert TrainingConfig(data_paths=[scenes], save_path="o").input_scale == 1.0
    assert TrainingConfig(data_paths=[scenes], save_path="o", input_scale=0.5).input_scale == 0.5
    for bad in (0, 1.5, -1):
        with pytest.raises(ValueError, match="input_scale"):
            TrainingConfig(data_paths=[scenes], save_path="o", input_scale=bad)


def test_dataset_resizes_images_and_labels(scenes):
    samples = discover(scenes).labelled
    full = SegmentationDataset(samples, ClassMap.default())
    half = SegmentationDataset(samples, ClassMap.default(), input_scale=0.5)
    (x, y), (xs, ys) = full[0], half[0]
    assert x.shape == (1, 64, 96) and xs.shape == (1, 32, 48) and ys.shape == (32, 48)
    np.testing.assert_array_equal(ys.numpy(), resize_labels(y.numpy(), (32, 48)))
    assert set(np.unique(ys.numpy())) <= set(np.unique(y.numpy()))


def test_training_at_half_scale_stores_it_and_fine_tuning_keeps_it(scenes, tmp_path):
    common = dict(
        data_paths=[scenes], encoder="tu-resnet10t", model_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]},
        num_workers=0, logger=[], batch_size=2, crop_size=32, device="cpu", epochs=1, split=0.25,
    )  # fmt: skip
    result = train(TrainingConfig(save_path=tmp_path / "a", input_scale=0.5, **common))
    model = load_model(result.last_path, device="cpu")
    assert model.input_scale == 0.5
    assert model.predict(smooth_image((64, 96))).mask.shape == (64, 96)
    # fine-tuning without the key keeps the checkpoint's scale; giving it changes the scale
    kept = train(
        TrainingConfig(save_path=tmp_path / "b", checkpoint=result.last_path, resume=False, **common)
    )
    assert load_model(kept.last_path, device="cpu").input_scale == 0.5
    changed = train(
        TrainingConfig(
            save_path=tmp_path / "c", checkpoint=result.last_path, resume=False, input_scale=1.0, **common
        )
    )
    assert load_model(changed.last_path, device="cpu").input_scale == 1.0


def test_runs_from_before_input_scale_resume_at_full_scale():
    from napari_fibsem.core.training.checkpointing import resume_conflicts

    old = json.dumps({"lr": 0.001, "crop_size": [64, 64]})
    assert resume_conflicts(old, {"lr": 0.001, "crop_size": [64, 64], "input_scale": 1.0}) == []
    assert resume_conflicts(old, {"lr": 0.001, "crop_size": [64, 64], "input_scale": 0.5}) == [
        "input_scale: 1.0 -> 0.5"
    ]
