"""ONNX backend and export: parity with torch, metadata, other people's files, bad files; the
inference rewrites behind SmpModel.predict; a smoke run of benchmarks/inference.py."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from napari_fibsem.core.io.classes import ClassInfo, ClassMap  # noqa: E402
from napari_fibsem.core.models import (  # noqa: E402
    ModelLoadError,
    Normalization,
    SegmentationModel,
    SmpModel,
    create_model,
    detect_backend,
    detect_format,
    load_model,
)
from napari_fibsem.core.models.export import export_onnx  # noqa: E402
from napari_fibsem.core.models.fast_cpu import inference_module  # noqa: E402
from napari_fibsem.core.models.fast_cpu.fold import fold_batchnorm  # noqa: E402
from napari_fibsem.core.models.onnx_backend import OnnxModel, softmax_channels  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
TOL = 1e-4


def tiny_model(**kwargs) -> SmpModel:
    torch.manual_seed(0)
    kwargs.setdefault("device", "cpu")
    return create_model("Unet", "resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), **kwargs)


def image(shape: tuple[int, int], seed: int = 0, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 8 + 2, shape[1] // 8 + 2))
    big = np.kron(small, np.ones((8, 8)))[: shape[0], : shape[1]] + 0.1 * rng.random(shape)
    big = (big - big.min()) / (big.max() - big.min())
    return (big * np.iinfo(dtype).max).astype(dtype)


def torch_reference(model: SmpModel) -> SmpModel:
    """The same weights on the plain eager path (no rewrites, NCHW): what the export must match."""
    ref = SmpModel(model.torch_module, model.metadata, device="cpu", channels_last=False, optimize=False)
    ref.tile_size, ref.tile_overlap, ref.batch_size = model.tile_size, model.tile_overlap, model.batch_size
    return ref


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[SmpModel, Path]:
    model = tiny_model()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert export_onnx(model, path) == path
    return model, path


# -- export and load by content ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny.onnx", "model.pt", "model"])
def test_loads_by_content_whatever_the_name(exported, tmp_path, name):
    model, path = exported
    target = tmp_path / name
    shutil.copy(path, target)
    assert detect_format(target) == "onnx" and detect_backend(target) == "onnx"
    onnx_model = load_model(target, runtime="onnxruntime")
    assert isinstance(onnx_model, OnnxModel) and isinstance(onnx_model, SegmentationModel)
    assert onnx_model.backend == "onnx" and onnx_model.runtime == "onnxruntime"
    assert onnx_model.torch_module is None and onnx_model.device == "cpu"
    img = image((37, 53))
    np.testing.assert_allclose(
        onnx_model.predict(img).probs, torch_reference(model).predict(img).probs, atol=TOL
    )


@pytest.fixture(scope="module")
def onnx_model(exported) -> OnnxModel:
    return load_model(exported[1], runtime="onnxruntime")


@pytest.mark.parametrize("shape", [(37, 53), (64, 96), (101, 75), (8, 5), (1, 17)])
def test_probabilities_match_torch_for_odd_sizes(exported, onnx_model, shape):
    ref = torch_reference(exported[0])
    img = image(shape) if min(shape) > 8 else np.full(shape, 9, np.uint8)
    got, want = onnx_model.predict(img), ref.predict(img)
    assert got.probs.shape == (6, *shape) and got.probs.dtype == np.float32
    assert got.mask.shape == shape and got.mask.dtype == np.uint8
    np.testing.assert_allclose(got.probs, want.probs, atol=TOL)
    np.testing.assert_allclose(got.probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(got.mask, np.argmax(got.probs, axis=0))


def test_tiled_and_batched_paths_match_torch(exported, tmp_path):
    model, path = exported
    options = {"tile_size": 32, "tile_overlap": 0.25, "batch_size": 3}
    onnx_model = load_model(path, runtime="onnxruntime", **options)
    ref = torch_reference(model)
    ref.tile_size, ref.tile_overlap, ref.batch_size = 32, 0.25, 3
    images = [image((70, 90), 1), image((30, 20), 2), image((30, 20), 3)]
    for got, want in zip(onnx_model.predict_batch(images), ref.predict_batch(images), strict=True):
        np.testing.assert_allclose(got.probs, want.probs, atol=TOL)


def test_uint16_input_uses_stored_normalisation(onnx_model):
    img8 = image((40, 48))
    a = onnx_model.predict(img8).probs
    b = onnx_model.predict(img8.astype(np.uint16) * 257).probs
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_metadata_round_trip(tmp_path):
    classes = ClassMap(
        {0: ClassInfo("bg", "#000000"), 1: ClassInfo("trench", "#123456"), 3: ClassInfo("needle", "#abcdef")}
    )
    norm = Normalization(mode="percentile", low=2.0, high=98.0, mean=0.25, std=0.5)
    model = tiny_model(class_map=classes, normalization=norm)
    path = export_onnx(model, tmp_path / "meta.onnx")
    loaded = load_model(path, runtime="onnxruntime")
    assert loaded.class_map == classes and loaded.num_classes == 4
    assert loaded.normalization == norm
    assert loaded.stride == model.stride == 8
    assert loaded.metadata.architecture == "Unet" and loaded.metadata.encoder == "resnet18"
    assert loaded.metadata.model_kwargs == {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}
    assert loaded.metadata.backend == "onnx" and loaded.output == "logits"
    img = image((45, 61), dtype=np.uint16)
    np.testing.assert_allclose(loaded.predict(img).probs, torch_reference(model).predict(img).probs, atol=TOL)


def test_export_is_atomic_and_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    model = tiny_model()
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    import napari_fibsem.core.models.export as export

    def boom(*args, **kwargs):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(export.torch.onnx, "export", boom)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(model, path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# -- other people's ONNX files ----------------------------------------------------------------
def _foreign(path: Path, module: nn.Module, shape: tuple[int, ...], dynamic: bool) -> Path:
    axes = {"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "h", 3: "w"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.zeros(shape),),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes=axes,
            dynamo=False,
        )
    return path


def _net(in_ch: int, classes: int, softmax: bool = False) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Conv2d(in_ch, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 3, padding=1)]
    if softmax:
        layers.append(nn.Softmax(dim=1))
    return nn.Sequential(*layers)


def test_foreign_static_onnx_loads_with_autolamella_defaults(tmp_path):
    # OpenFIBSEM's export: fixed 1 x 1 x H x W input, logits out, image / 255 preprocessing
    net = _net(1, 6)
    path = _foreign(tmp_path / "autolamella.onnx", net, (1, 1, 64, 96), dynamic=False)
    model = load_model(path, runtime="onnxruntime")
    assert model.class_map == ClassMap.default() and model.normalization == Normalization()
    assert model.fixed_size == (64, 96) and model.fixed_batch == 1 and model.output == "logits"
    img = image((64, 96))
    with torch.inference_mode():
        want = torch.softmax(net(torch.from_numpy(img / np.float32(255))[None, None]), 1)[0].numpy()
    np.testing.assert_allclose(model.predict(img).probs, want, atol=TOL)
    # other sizes: padded up to the file's size, or slid over in windows of it; batches split
    for shape in [(40, 50), (150, 170)]:
        preds = model.predict_batch([image(shape, 1), image(shape, 2)])
        assert [p.probs.shape for p in preds] == [(6, *shape)] * 2
        np.testing.assert_allclose(preds[0].probs.sum(axis=0), 1.0, atol=1e-5)


def test_foreign_dynamic_onnx_with_softmax_and_generic_classes(tmp_path):
    net = _net(1, 3, softmax=True)
    path = _foreign(tmp_path / "other", net, (1, 1, 32, 32), dynamic=True)
    model = load_model(path, runtime="onnxruntime")
    assert model.output == "probs" and model.fixed_size is None
    assert model.class_map.names == ["background", "class_1", "class_2"]
    img = image((64, 96))  # a multiple of the default stride 32: no padding, so exact everywhere
    with torch.inference_mode():
        want = net(torch.from_numpy(img / np.float32(255))[None, None])[0].numpy()
    np.testing.assert_allclose(model.predict(img).probs, want, atol=TOL)
    assert model.predict(image((33, 47))).probs.shape == (3, 33, 47)
    renamed = load_model(path, runtime="onnxruntime", class_map=["bg", "a", "b"], stride=16)
    assert renamed.class_map.names == ["bg", "a", "b"] and renamed.stride == 16
    with pytest.raises(ModelLoadError, match="outputs 3 channels"):
        load_model(path, runtime="onnxruntime", class_map=["bg", "a"])


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 2, 32, 32)])
def test_foreign_onnx_with_wrong_input_is_one_clear_error(tmp_path, shape):
    path = _foreign(tmp_path / "rgb.onnx", _net(shape[1], 6), shape, dynamic=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ModelLoadError, match=r"rgb\.onnx.*N x 1 x H x W") as info:
            load_model(path)
    assert f"(n, {shape[1]}, h, w)" in str(info.value)


# -- bad files ---------------------------------------------------------------------------------
def test_truncated_onnx_is_a_model_load_error_naming_the_file(exported, tmp_path):
    data = exported[1].read_bytes()
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="broken.onnx"):
        load_model(bad)
    with pytest.raises(ModelLoadError, match=r"broken\.onnx.*ONNX"):
        load_model(bad, backend="onnx")
    with pytest.raises(ModelLoadError, match="missing.onnx"):
        load_model(tmp_path / "missing.onnx", backend="onnx")


def test_unknown_runtime_and_device_are_rejected(exported):
    with pytest.raises(ValueError, match="choose one of"):
        load_model(exported[1], runtime="tensorrt")
    with pytest.raises(ValueError, match="cpu"):
        load_model(exported[1], device="mps")


def test_openvino_runtime_matches_torch(exported):
    pytest.importorskip("openvino")
    model, path = exported
    ov_model = load_model(path, runtime="openvino")
    assert ov_model.runtime == "openvino"
    img = image((50, 70))
    np.testing.assert_allclose(
        ov_model.predict(img).probs, torch_reference(model).predict(img).probs, atol=TOL
    )


def test_softmax_channels():
    logits = np.random.default_rng(0).normal(0, 30, (2, 4, 5, 6)).astype(np.float32)
    probs = softmax_channels(logits)
    want = torch.softmax(torch.from_numpy(logits), 1).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-6)
    assert probs is not logits


# -- inference rewrites behind SmpModel.predict ------------------------------------------------
def test_inference_module_is_exact_and_rewrites_unet():
    model = tiny_model()
    net = model.torch_module.eval()
    fused = inference_module(net)
    names = {type(m).__name__ for m in fused.modules()}
    assert "PolyphaseUnetBlock" in names and "BatchNorm2d" not in names
    x = torch.rand(2, 1, 40, 56)
    with torch.inference_mode():
        np.testing.assert_allclose(fused(x).numpy(), net(x).numpy(), rtol=1e-4, atol=1e-4)


def test_rewrites_keep_other_architectures_correct():
    torch.manual_seed(0)
    fpn = dict(encoder_depth=3, decoder_pyramid_channels=32, decoder_segmentation_channels=32)
    net = create_model("FPN", "resnet18", device="cpu", **fpn).torch_module.eval()
    assert fold_batchnorm(create_model("FPN", "resnet18", device="cpu", **fpn).torch_module) > 0
    fused = inference_module(net)
    assert not any(type(m).__name__ == "PolyphaseUnetBlock" for m in fused.modules())
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(fused(x).numpy(), net(x).numpy(), rtol=1e-4, atol=1e-4)


def test_optimised_predict_matches_plain_and_follows_weight_updates():
    model = tiny_model()
    plain = tiny_model(optimize=False)
    assert model._optimize and not plain._optimize
    img = image((45, 67))
    np.testing.assert_allclose(model.predict(img).probs, plain.predict(img).probs, atol=1e-5)
    # training changes the weights in place: the optimised copy must follow
    opt = torch.optim.SGD(model.torch_module.parameters(), lr=0.5)
    model.torch_module.train()
    out = model.torch_module(torch.rand(2, 1, 32, 32).contiguous(memory_format=torch.channels_last))
    out.mean().backward()
    opt.step()
    plain.torch_module.load_state_dict(model.torch_module.state_dict())
    np.testing.assert_allclose(model.predict(img).probs, plain.predict(img).probs, atol=1e-5)
    assert model.torch_module.training


# -- the benchmark script does not rot ----------------------------------------------------------
def test_inference_benchmark_smoke(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_inference", ROOT / "benchmarks" / "inference.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    rows = bench.main(
        [
            "--quick",
            "--tiny",
            "--size",
            "48x80",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--runtimes",
            "onnxruntime",
        ]
    )
    out = capsys.readouterr().out
    assert "speed-up" in out and "fastest:" in out
    names = [r.name for r in rows]
    assert len(rows) == 6 and "smp predict, +bands (default)" in names and "onnx predict, onnxruntime" in names
    assert all(r.max_prob_diff <= 1e-3 for r in rows)


def test_export_onnx_cli(tmp_path):
    from typer.testing import CliRunner

    from napari_fibsem.cli import app

    bundle = tiny_model().save(tmp_path / "m.pt")
    result = CliRunner().invoke(app, ["export-onnx", str(bundle), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "check: max |probability difference|" in result.output
    assert isinstance(load_model(tmp_path / "m.onnx", runtime="onnxruntime"), OnnxModel)
    again = CliRunner().invoke(app, ["export-onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "x.onnx")])
    assert again.exit_code == 2 and "only torch" in again.output and not (tmp_path / "x.onnx").exists()
