"""Checkpoint bundles, OpenFIBSEM dicts and load_model: round trips, content detection, safety."""

from __future__ import annotations

import os
import pickle
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch

from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models import (
    BundleMetadata,
    ModelLoadError,
    Normalization,
    SmpModel,
    create_model,
    detect_format,
    load_model,
    read_bundle,
    save_bundle,
)
from napari_fibsem.core.models.bundle import BUNDLE_KEY, write_bundle

TINY = {"encoder_depth": 3, "decoder_channels": (32, 16, 8)}


def tiny_model(**kwargs) -> SmpModel:
    torch.manual_seed(0)
    return create_model("Unet", "resnet18", device="cpu", **TINY, **kwargs)


def image(shape=(64, 96), seed=0, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 8 + 1, shape[1] // 8 + 1))
    img = np.kron(small, np.ones((8, 8)))[: shape[0], : shape[1]]
    return (img * np.iinfo(dtype).max).astype(dtype)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[SmpModel, Path]:
    cmap = ClassMap.from_names(["background", "lamella", "needle"])
    model = tiny_model(class_map=cmap, normalization=Normalization(mode="percentile", mean=0.5, std=0.25))
    path = tmp_path_factory.mktemp("bundle") / "model.pt"
    model.save(
        path,
        training_config={"lr": 1e-3, "epochs": 2, "data": Path("/data/x")},
        metrics={"miou": np.float32(0.75)},
    )
    return model, path


# -- round trip --------------------------------------------------------------------------------
def test_bundle_round_trip_identical_probabilities(saved):
    model, path = saved
    loaded = load_model(path, device="cpu")
    assert isinstance(loaded, SmpModel)
    for shape in [(64, 96), (37, 53)]:
        img = image(shape)
        np.testing.assert_array_equal(loaded.predict(img).probs, model.predict(img).probs)


def test_bundle_metadata_preserved(saved):
    model, path = saved
    meta, state_dict = read_bundle(path)
    assert meta.class_map == model.class_map
    assert meta.normalization == Normalization(mode="percentile", mean=0.5, std=0.25)
    assert meta.training_config == {"lr": 1e-3, "epochs": 2, "data": "/data/x"}
    assert meta.metrics == {"miou": 0.75}
    assert (meta.architecture, meta.encoder, meta.in_channels, meta.num_classes) == ("Unet", "resnet18", 1, 3)
    assert meta.model_kwargs == {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}
    assert datetime.fromisoformat(meta.created_at).utcoffset().total_seconds() == 0
    assert meta.package_version
    assert set(state_dict) == set(model.torch_module.state_dict())
    loaded = load_model(path, device="cpu")
    assert loaded.class_map == model.class_map and loaded.normalization == model.normalization
    assert loaded.metadata.training_config["epochs"] == 2


@pytest.mark.parametrize("name", ["weird.onnx", "no_extension", "plans.json"])
def test_bundle_found_by_content_not_name(saved, tmp_path, name):
    model, path = saved
    renamed = tmp_path / name
    shutil.copy(path, renamed)
    assert detect_format(renamed) == "bundle"
    img = image()
    np.testing.assert_array_equal(
        load_model(renamed, device="cpu").predict(img).probs, model.predict(img).probs
    )


def test_save_bundle_function_and_in_memory_payload(tmp_path):
    model = tiny_model()
    path = save_bundle(tmp_path / "m.bundle", model, metrics={"loss": torch.tensor(0.5)})
    payload = torch.load(path, weights_only=True)
    assert payload[BUNDLE_KEY] == 1 and payload["metadata"]["metrics"] == {"loss": 0.5}
    from_memory = load_model(payload, device="cpu")
    img = image()
    np.testing.assert_array_equal(from_memory.predict(img).probs, model.predict(img).probs)


def test_failed_save_leaves_previous_file_intact(tmp_path):
    model = tiny_model()
    path = model.save(tmp_path / "m.pt")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="training config"):
        model.save(path, training_config={"bad": object()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_create_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="unet"):
        create_model("NotAnArchitecture", "resnet18")
    with pytest.raises(ValueError, match="resnet34"):
        create_model("Unet", "not_an_encoder")


# -- OpenFIBSEM --------------------------------------------------------------------------------
@pytest.mark.parametrize("nc", [6, 3])
def test_openfibsem_dict_loads_and_predicts_like_source(tmp_path, nc):
    torch.manual_seed(1)
    unet = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=nc).eval()
    path = tmp_path / "autolamella-mega.pt"
    torch.save({"checkpoint": unet.state_dict(), "encoder": "resnet18", "nc": nc}, path)
    assert detect_format(path) == "openfibsem"
    model = load_model(path, device="cpu")
    assert model.num_classes == nc
    if nc == 6:
        assert model.class_map == ClassMap.default()
    else:
        assert model.class_map.names == ["background", "class_1", "class_2"]
    assert model.normalization == Normalization(mode="fixed", mean=0.0, std=1.0)
    img = image((64, 96))
    with torch.no_grad():  # OpenFIBSEM's convention: float(image) / 255, softmax over classes
        x = torch.from_numpy(img.astype(np.float32) / 255.0)[None, None]
        expected = torch.softmax(unet(x), dim=1)[0].numpy()
    np.testing.assert_allclose(model.predict(img).probs, expected, atol=1e-5)


def test_openfibsem_dict_missing_key(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"checkpoint": {"w": torch.zeros(1)}, "encoder": "resnet34"}, path)
    with pytest.raises(ModelLoadError, match=r"ckpt\.pt.*lacks \['nc'\]"):
        load_model(path)


# -- refusing bad input ------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("writer", ["pickle", "torch"])
def test_malicious_pickle_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "innocent.pt"
    obj = {"checkpoint": _Payload(marker), "encoder": "resnet34", "nc": 6}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path)
    with pytest.raises(ModelLoadError, match=r"innocent\.pt: refused to load"):
        load_model(path)
    with pytest.raises(ModelLoadError):
        detect_format(path)
    assert not marker.exists()


def test_whole_module_pickle_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(
        smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=2, **TINY), path
    )
    with pytest.raises(ModelLoadError, match="refused"):
        load_model(path)


@pytest.fixture
def bundle_bytes(tmp_path) -> bytes:
    return tiny_model().save(tmp_path / "full.pt").read_bytes()


@pytest.mark.parametrize(
    "kind",
    ["random", "empty", "text", "truncated", "missing", "folder"],
)
def test_unrecognised_input_one_clear_error(tmp_path, bundle_bytes, kind):
    path = tmp_path / f"model_{kind}.pt"
    if kind == "random":
        path.write_bytes(bytes([0x13]) + np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a model\n" * 20)
    elif kind == "truncated":
        path.write_bytes(bundle_bytes[: len(bundle_bytes) // 2])
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_mismatched_state_dict_named_clearly(tmp_path):
    model = tiny_model()  # 6 classes
    meta = BundleMetadata(
        class_map=ClassMap.from_names(["a", "b"]),
        architecture="Unet",
        encoder="resnet18",
        model_kwargs=dict(TINY),
    )
    path = write_bundle(tmp_path / "mismatch.pt", meta, model.torch_module.state_dict())
    with pytest.raises(
        ModelLoadError,
        match=r"mismatch\.pt: weights do not match Unet.*2 classes.*shape mismatches.*segmentation_head",
    ):
        load_model(path)
    meta34 = BundleMetadata(
        class_map=ClassMap.default(), architecture="Unet", encoder="resnet34", model_kwargs=dict(TINY)
    )
    path = write_bundle(tmp_path / "wrong_encoder.pt", meta34, model.torch_module.state_dict())
    with pytest.raises(ModelLoadError, match=r"wrong_encoder\.pt: .*missing keys: \['encoder\.layer1\.2"):
        load_model(path)


def test_bare_state_dict_says_what_is_missing(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(tiny_model().torch_module.state_dict(), path)
    with pytest.raises(
        ModelLoadError, match=r"weights\.pth: a bare state_dict.*architecture, encoder, class map"
    ):
        load_model(path)
