"""Backend registry and content-based format detection (ONNX, nnU-Net) without those backends."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from napari_fibsem.core.models import (
    SEGMENTATION_BACKENDS,
    BackendUnavailableError,
    ModelLoadError,
    SmpModel,
    UnknownBackendError,
    detect_backend,
    detect_format,
    get_backend,
    load_model,
)
from napari_fibsem.core.models.formats import looks_like_onnx, sniff


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def fake_onnx_bytes() -> bytes:
    """A ModelProto skeleton: ir_version, producer_name, graph (with a node), opset_import."""
    graph = _field(1, _field(4, b"Relu")) + _field(2, b"g")
    opset = _field(1, b"") + bytes([0x10]) + _varint(17)
    return bytes([0x08]) + _varint(9) + _field(2, b"pytorch") + _field(7, graph) + _field(8, opset)


def test_registry_lists_options_for_unknown_name():
    assert set(SEGMENTATION_BACKENDS) >= {"smp", "onnx", "nnunet"}
    assert SEGMENTATION_BACKENDS["onnx"] == "napari_fibsem.core.models.onnx_backend:OnnxModel"
    assert SEGMENTATION_BACKENDS["nnunet"] == "napari_fibsem.core.models.nnunet_backend:NnUNetModel"
    with pytest.raises(UnknownBackendError) as info:
        get_backend("tensorflow")
    msg = str(info.value)
    assert "'tensorflow'" in msg and all(name in msg for name in ("smp", "onnx", "nnunet"))
    assert isinstance(info.value, KeyError)


def test_registry_resolves_lazily_and_reports_missing_modules(monkeypatch):
    assert get_backend("smp") is SmpModel
    monkeypatch.setitem(SEGMENTATION_BACKENDS, "ghost", "napari_fibsem.core.models._no_such_backend:Ghost")
    with pytest.raises(BackendUnavailableError, match="'ghost' is registered but its module"):
        get_backend("ghost")


def test_onnx_detected_by_content(tmp_path):
    path = tmp_path / "model.pt"  # misleading name on purpose
    path.write_bytes(fake_onnx_bytes())
    assert looks_like_onnx(path)
    assert sniff(path) == "onnx" and detect_format(path) == "onnx" and detect_backend(path) == "onnx"
    # a truncated ONNX file is not ONNX any more
    path.write_bytes(fake_onnx_bytes()[:-3])
    with pytest.raises(ModelLoadError, match="not a recognised model file"):
        sniff(path)


def test_real_onnx_file_detected(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
    )
    path = tmp_path / "exported"
    onnx.save(helper.make_model(graph), str(path))
    assert detect_format(path) == "onnx"


def test_nnunet_folder_detected(tmp_path):
    folder = tmp_path / "nnUNetTrainer__nnUNetPlans__2d"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps({"dataset_name": "Dataset001_Lamella"}))
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0}}))
    assert detect_format(folder) == "nnunet" and detect_backend(folder) == "nnunet"


def test_load_model_routes_by_content_to_registered_backend(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_backends"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "onnxish.py").write_text(
        textwrap.dedent(
            """
            class Fake:
                @classmethod
                def load(cls, path, device=None, **options):
                    obj = cls()
                    obj.path, obj.device, obj.options = path, device, options
                    return obj
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(SEGMENTATION_BACKENDS, "onnx", "fake_backends.onnxish:Fake")
    monkeypatch.setitem(SEGMENTATION_BACKENDS, "nnunet", "fake_backends.onnxish:Fake")
    onnx_file = tmp_path / "weights.pth"
    onnx_file.write_bytes(fake_onnx_bytes())
    model = load_model(onnx_file, device="cpu", tile_size=512)
    assert type(model).__name__ == "Fake" and model.path == onnx_file and model.options == {"tile_size": 512}
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "dataset.json").write_text("{}")
    assert load_model(folder).path == folder


def test_missing_backend_module_error_names_file(tmp_path, monkeypatch):
    monkeypatch.setitem(SEGMENTATION_BACKENDS, "onnx", "napari_fibsem.core.models._absent_onnx:OnnxModel")
    path = tmp_path / "m.bin"
    path.write_bytes(fake_onnx_bytes())
    with pytest.raises(BackendUnavailableError, match=r"m\.bin: content recognised as backend 'onnx'"):
        load_model(path)


def test_importing_models_package_is_light():
    code = (
        "import sys, napari_fibsem.core.models as m; "
        "assert m.SEGMENTATION_BACKENDS; "
        "bad = [k for k in ('torch', 'segmentation_models_pytorch', 'qtpy', 'napari', 'magicgui') if k in sys.modules]; "
        "print(bad)"
    )
    src = str(Path(__file__).resolve().parents[3] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src}, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
