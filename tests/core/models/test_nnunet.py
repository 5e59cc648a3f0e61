"""nnU-Net: conversion of our dataset folders (no nnunetv2 needed) and the ``nnunet`` backend.

The loading tests build a small but real results folder (plans in nnU-Net v2's schema, random
weights in the layout of nnU-Net's trainer checkpoints) and compare predictions with nnU-Net's
own ``nnUNetPredictor`` on the same folder; they skip when nnunetv2 is not installed.
"""

from __future__ import annotations

import copy
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from napari_fibsem.cli import app
from napari_fibsem.core.data.dataset import DatasetError
from napari_fibsem.core.io.classes import ClassInfo, ClassMap
from napari_fibsem.core.io.imageio import read_image, read_labels, write_image, write_labels
from napari_fibsem.core.models import ModelLoadError, SegmentationModel, detect_backend, load_model
from napari_fibsem.core.models.nnunet_convert import METADATA_KEY, NnUNetConversionError, convert_to_nnunet
from napari_fibsem.core.synthetic.dataset import write_dataset

SIZE = (64, 96)


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    write_dataset(folder, n=3, size=SIZE, seed=1)
    return folder


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- conversion -----------------------------------------------------------------------------------
def test_layout_dataset_json_and_identical_pixels(data, tmp_path):
    rng = np.random.default_rng(0)
    write_image(data / "unlabelled.tif", rng.integers(0, 65535, (50, 70), dtype=np.uint16))
    raw = tmp_path / "nnUNet_raw"
    result = convert_to_nnunet(data, raw, 12, "Lamella", include_unlabelled=True)
    target = raw / "Dataset012_Lamella"
    assert result.folder == target and result.num_training == 3 and result.num_test == 1
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == [f"synthetic_{i:04d}_0000.tif" for i in range(3)]
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == [f"synthetic_{i:04d}.tif" for i in range(3)]
    assert [p.name for p in (target / "imagesTs").iterdir()] == ["unlabelled_0000.tif"]
    meta = json.loads((target / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "FIB-SEM"}
    assert meta["labels"] == {name: i for i, name in enumerate(ClassMap.default().names)}
    assert meta["numTraining"] == 3 and meta["file_ending"] == ".tif"
    assert meta["overwrite_image_reader_writer"] == "NaturalImage2DIO"
    assert ClassMap.from_dict({"classes": meta[METADATA_KEY]["class_map"]}) == ClassMap.default()
    for i in range(3):
        name = f"synthetic_{i:04d}"
        np.testing.assert_array_equal(
            read_labels(target / "labelsTr" / f"{name}.tif"), read_labels(data / "labels" / f"{name}.tif")
        )
        np.testing.assert_array_equal(
            read_image(target / "imagesTr" / f"{name}_0000.tif").data, read_image(data / f"{name}.tif").data
        )
    test_image = read_image(target / "imagesTs" / "unlabelled_0000.tif").data
    assert test_image.dtype == np.uint16 and test_image.shape == (50, 70)
    assert "synthetic_0000" in (target / "napari_fibsem_cases.csv").read_text()
    assert hidden_leftovers(raw) == []


def test_unlabelled_images_are_left_out_by_default(data, tmp_path):
    write_image(data / "unlabelled.tif", np.zeros((40, 40), np.uint8))
    result = convert_to_nnunet(data, tmp_path / "raw", 1, "A")
    assert result.num_test == 0 and not (result.folder / "imagesTs").exists()


def test_refuses_to_overwrite_unless_asked(data, tmp_path):
    raw = tmp_path / "raw"
    first = convert_to_nnunet(data, raw, 5, "Lam")
    (first.folder / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError, match="Dataset005_Lam.*not empty.*overwrite"):
        convert_to_nnunet(data, raw, 5, "Lam")
    assert (first.folder / "stale.txt").exists()
    with pytest.raises(FileExistsError, match="Dataset005_Lam.*same dataset id"):
        convert_to_nnunet(data, raw, 5, "Other")
    again = convert_to_nnunet(data, raw, 5, "Lam", overwrite=True)
    assert not (again.folder / "stale.txt").exists() and again.num_training == 3
    assert hidden_leftovers(raw) == []


def test_bad_labels_one_clear_error_and_nothing_written(data, tmp_path):
    bad = read_labels(data / "labels" / "synthetic_0001.tif")
    bad[0, 0] = 9
    write_labels(data / "labels" / "synthetic_0001.tif", bad)
    raw = tmp_path / "raw"
    with pytest.raises(DatasetError, match=r"synthetic_0001\.tif.*\[9\]"):
        convert_to_nnunet(data, raw, 3, "Bad")
    assert not raw.exists() or list(raw.iterdir()) == []


def test_class_ids_with_gaps_are_renumbered_for_nnunet(tmp_path):
    folder = tmp_path / "gaps"
    classes = ClassMap({0: ClassInfo("bg", "#000000"), 1: ClassInfo("lamella", "#ff0000"), 4: ClassInfo("post", "#0000ff")})
    classes.save(folder / "classes.yaml")
    mask = np.zeros((30, 40), np.uint8)
    mask[5:10, 5:10], mask[20:25, 30:35] = 1, 4
    write_image(folder / "a.tif", np.full((30, 40), 7, np.uint8))
    write_labels(folder / "labels" / "a.tif", mask, classes)
    result = convert_to_nnunet(folder, tmp_path / "raw", 8, "Gaps")
    meta = json.loads((result.folder / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "lamella": 1, "post": 2}
    assert meta[METADATA_KEY]["nnunet_ids"] == {"0": 0, "1": 1, "4": 2}
    written = read_labels(result.folder / "labelsTr" / "a.tif")
    np.testing.assert_array_equal(written, np.where(mask == 4, 2, mask))


def test_same_file_names_in_two_folders_get_distinct_cases(tmp_path):
    a, b = tmp_path / "session_a", tmp_path / "session_b"
    write_dataset(a, n=2, size=SIZE, seed=1)
    write_dataset(b, n=1, size=SIZE, seed=2)
    result = convert_to_nnunet([a, b], tmp_path / "raw", 9, "Both")
    names = sorted(p.name for p in (result.folder / "labelsTr").iterdir())
    assert names == ["session_a_synthetic_0000.tif", "session_b_synthetic_0000.tif", "synthetic_0001.tif"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset_id": 0}, "ids are 1..999"),
        ({"dataset_id": 1000}, "ids are 1..999"),
        ({"name": "my data"}, "letters, digits"),
        ({"class_map": ClassMap({1: ClassInfo("lamella", "#ff0000")})}, "class id 0 as background"),
        ({"class_map": ClassMap.from_names(["background", "ignore"])}, "reserves"),
        ({"channel_name": " "}, "channel_name"),
    ],
)
def test_bad_settings_are_refused(data, tmp_path, kwargs, match):
    args = {"dataset_id": 1, "name": "X", **kwargs}
    with pytest.raises(NnUNetConversionError, match=match):
        convert_to_nnunet(data, tmp_path / "raw", **args)
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_no_labelled_images_is_an_error(tmp_path):
    write_image(tmp_path / "only" / "a.tif", np.zeros((20, 20), np.uint8))
    with pytest.raises(NnUNetConversionError, match="no labelled images"):
        convert_to_nnunet(tmp_path / "only", tmp_path / "raw", 1, "X")


def test_cli_to_nnunet(data, tmp_path):
    runner = CliRunner()
    raw = tmp_path / "raw"
    args = ["to-nnunet", str(data), "--out", str(raw), "--id", "4", "--name", "Cli"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Dataset004_Cli" in result.output and "nnUNetv2_plan_and_preprocess -d 4" in result.output
    assert "nnUNetv2_train 4 2d all" in result.output  # 3 cases: too few for the 5-fold split
    assert (raw / "Dataset004_Cli" / "dataset.json").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "not empty" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_missing_nnunetv2_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nnunetv2", None)  # import fails as if not installed
    folder = tmp_path / "nnUNetTrainer__nnUNetPlans__2d"
    folder.mkdir()
    (folder / "plans.json").write_text("{}")
    (folder / "dataset.json").write_text("{}")
    assert detect_backend(folder) == "nnunet"
    with pytest.raises(ImportError, match=r"pip install napari-fibsem\[nnunet\]"):
        load_model(folder)


# -- a real (tiny) nnU-Net results folder ------------------------------------------------------------
PATCH = [32, 48]


def tiny_plans(dataset_name: str, **config_changes) -> dict:
    """nnU-Net v2 plans for a 2d configuration, as ``nnUNetv2_plan_experiment`` writes them, shrunk."""
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 3,
            "features_per_stage": [4, 8, 16],
            "conv_op": "torch.nn.modules.conv.Conv2d",
            "kernel_sizes": [[3, 3], [3, 3], [3, 3]],
            "strides": [[1, 1], [2, 2], [2, 2]],
            "n_conv_per_stage": [2, 2, 2],
            "n_conv_per_stage_decoder": [2, 2],
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    config = {
        "data_identifier": "nnUNetPlans_2d",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": PATCH,
        "median_image_size_in_voxels": [64.0, 96.0],
        "spacing": [1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "architecture": arch,
        "batch_dice": True,
        **config_changes,
    }
    return {
        "dataset_name": dataset_name,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [999.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1, 64, 96],
        "image_reader_writer": "NaturalImage2DIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"2d": config},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 255.0, "mean": 150.5, "median": 160.0, "min": 20.0,
                  "percentile_00_5": 40.0, "percentile_99_5": 250.0, "std": 45.25}
        },
    }


def nnunet_checkpoint(plans: dict, dataset_json: dict, fold: int, seed: int, configuration: str = "2d") -> dict:
    """Random weights in the dict layout nnU-Net's trainer saves (numpy scalars in the logs included)."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plans["configurations"]["2d"]["architecture"]
    torch.manual_seed(seed)
    net = get_network_from_plans(
        arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
        1, len(dataset_json["labels"]), allow_init=True, deep_supervision=True,
    )
    with torch.no_grad():  # affine norms away from 1/0 so every parameter matters
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    return {
        "network_weights": net.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": {
            "mean_fg_dice": [np.float64(0.25)],
            "ema_fg_dice": [np.float64(0.25)],
            "dice_per_class_or_region": [[np.float64(0.1), np.float64(0.4)]],
            "train_losses": [np.float32(0.9)],
            "val_losses": [np.float32(0.8)],
            "lrs": [0.01],
            "epoch_start_timestamps": [1.0],
            "epoch_end_timestamps": [2.0],
        },
        "_best_ema": np.float64(0.25),
        "current_epoch": 1,
        "init_args": {
            "plans": plans,
            "configuration": configuration,
            "fold": fold,
            "dataset_json": dataset_json,
            "device": torch.device("cpu"),
        },
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1),
    }


def write_results_folder(
    root: Path, raw_dataset: Path, folds=(0, 1), configuration: str = "2d", **config_changes
) -> Path:
    import torch

    dataset_json = json.loads((raw_dataset / "dataset.json").read_text())
    plans = tiny_plans(raw_dataset.name, **config_changes)
    folder = root / raw_dataset.name / f"nnUNetTrainer__nnUNetPlans__{configuration}"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        ckpt = nnunet_checkpoint(plans, dataset_json, fold, seed=10 + fold, configuration=configuration)
        torch.save(ckpt, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine OpenMP's spinning threads make tiny convs 50x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nnunet_results(tmp_path_factory, one_torch_thread) -> Path:
    pytest.importorskip("nnunetv2")
    base = tmp_path_factory.mktemp("nnunet")
    write_dataset(base / "data", n=2, size=SIZE, seed=3)
    raw = convert_to_nnunet(base / "data", base / "raw", 7, "Tiny").folder
    return write_results_folder(base / "results", raw)


def make_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A textured uint8 image with a zero border and a zero hole (exercises nnU-Net's non-zero crop)."""
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 6 + 2, shape[1] // 6 + 2))
    img = np.kron(small, np.ones((6, 6)))[: shape[0], : shape[1]] * 200 + rng.random(shape) * 55
    img = img.astype(np.uint8)
    img[:3] = 0
    img[:, -2:] = 0
    img[shape[0] // 2, shape[1] // 2] = 0
    return img


def test_load_model_detects_nnunet_and_predicts_any_size(nnunet_results):
    from napari_fibsem.core.models.nnunet_backend import NnUNetModel

    assert detect_backend(nnunet_results) == "nnunet"
    model = load_model(nnunet_results, device="cpu")
    assert isinstance(model, NnUNetModel) and isinstance(model, SegmentationModel)
    assert model.backend == "nnunet" and model.device == "cpu" and model.source.folds == ["0", "1"]
    assert model.class_map == ClassMap.default() and model.patch_size == tuple(PATCH)
    assert model.normalization.mode == "nnunet:ZScoreNormalization"
    for shape in [(75, 101), (20, 30), (1, 17), (130, 40)]:
        pred = model.predict(make_image(shape) if min(shape) > 8 else np.full(shape, 5, np.uint8))
        assert pred.probs.shape == (6, *shape) and pred.probs.dtype == np.float32
        assert pred.mask.shape == shape and pred.mask.dtype == np.uint8
        np.testing.assert_allclose(pred.probs.sum(axis=0), 1.0, atol=1e-5)
        np.testing.assert_array_equal(pred.mask, np.argmax(pred.probs, axis=0))
    img = make_image((75, 101))
    pred = model.predict(img)
    assert np.all(pred.probs[0, :3] == 1.0)  # the zero border is outside nnU-Net's crop: background
    assert len(np.unique(pred.mask[3:, :-2])) > 1  # random weights still give a non-constant map
    batch = model.predict_batch([img, img.astype(np.uint16)])
    np.testing.assert_allclose(batch[0].probs, pred.probs, atol=1e-6)
    np.testing.assert_allclose(batch[1].probs, pred.probs, atol=1e-6)  # z-score: same for any bit depth


def nnunet_predictor_probs(folder: Path, image: np.ndarray, folds, mirroring: bool, exact: bool, monkeypatch):
    """Probabilities from nnU-Net's own predictor; ``exact`` makes it accumulate in float32 like ours."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=mirroring, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=folds)
    with monkeypatch.context() as m:
        if exact:  # its accumulator is torch.half; our float32 one avoids that rounding
            m.setattr(torch, "half", torch.float32)
        _, probs = predictor.predict_single_npy_array(
            image[None, None].astype(np.float32), {"spacing": (999, 1, 1)}, None, None, True
        )
    return probs[:, 0]


@pytest.mark.parametrize(
    ("scheme", "use_mask", "mirroring"),
    [("ZScoreNormalization", False, True), ("ZScoreNormalization", True, False), ("CTNormalization", False, True)],
)
def test_probabilities_match_nnunet_predictor(nnunet_results, tmp_path, monkeypatch, scheme, use_mask, mirroring):
    folder = tmp_path / nnunet_results.name
    shutil.copytree(nnunet_results, folder)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["2d"].update(normalization_schemes=[scheme], use_mask_for_norm=[use_mask])
    (folder / "plans.json").write_text(json.dumps(plans))
    image = make_image((75, 101), seed=4)

    model = load_model(folder, device="cpu", mirroring=mirroring)
    assert model.normalization.scheme == scheme and model.normalization.use_mask is use_mask
    ours = model.predict(image).probs
    exact = nnunet_predictor_probs(folder, image, (0, 1), mirroring, True, monkeypatch)
    np.testing.assert_allclose(ours, exact, atol=1e-5)
    as_shipped = nnunet_predictor_probs(folder, image, (0, 1), mirroring, False, monkeypatch)
    # nnU-Net as shipped sums window logits in float16 (steps of 2**-9 near 3): ~1e-3 differences
    np.testing.assert_allclose(ours, as_shipped, atol=1e-2)


def test_single_fold_and_checkpoint_choice(nnunet_results, tmp_path, monkeypatch):
    model = load_model(nnunet_results, device="cpu", folds=1)
    assert model.source.folds == ["1"] and len(model.networks) == 1
    image = make_image((40, 50), seed=5)
    exact = nnunet_predictor_probs(nnunet_results, image, (1,), True, True, monkeypatch)
    np.testing.assert_allclose(model.predict(image).probs, exact, atol=1e-5)
    with pytest.raises(ModelLoadError, match=r"fold 3 has no fold_3/checkpoint_final\.pth.*\['0', '1'\]"):
        load_model(nnunet_results, folds=[0, 3])
    with pytest.raises(ModelLoadError, match=r"no fold_<n>/checkpoint_best\.pth"):
        load_model(nnunet_results, checkpoint="checkpoint_best.pth")


def test_a_3d_configuration_is_refused(nnunet_results, tmp_path):
    raw_json = json.loads((nnunet_results / "dataset.json").read_text())
    folder = tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir()
    plans = json.loads((nnunet_results / "plans.json").read_text())
    three_d = copy.deepcopy(plans["configurations"]["2d"])
    three_d.update(patch_size=[8, 32, 48], spacing=[1.0, 1.0, 1.0], data_identifier="nnUNetPlans_3d_fullres")
    plans["configurations"]["3d_fullres"] = three_d
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(raw_json))
    (folder / "fold_0").mkdir()
    shutil.copy(nnunet_results / "fold_0" / "checkpoint_final.pth", folder / "fold_0")
    import torch

    ckpt = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    ckpt["init_args"]["configuration"] = "3d_fullres"
    torch.save(ckpt, folder / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ModelLoadError, match=r"3D configuration; napari-fibsem runs 2D nnU-Net models only"):
        load_model(folder)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_a_checkpoint_with_code_is_refused(nnunet_results, tmp_path, fmt):
    import torch

    folder = tmp_path / nnunet_results.name
    shutil.copytree(nnunet_results, folder)
    marker = tmp_path / "pwned"
    target = folder / "fold_1" / "checkpoint_final.pth"
    payload = {"network_weights": {}, "x": _Evil(marker)}
    if fmt == "torch":
        torch.save(payload, target)
    else:
        target.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ModelLoadError, match=r"fold_1.*(refused|corrupt)"):
        load_model(folder)
    assert not marker.exists()


def test_folders_that_are_not_trainer_folders(nnunet_results, tmp_path):
    with pytest.raises(ModelLoadError, match="pass one of its trainer folders: nnUNetTrainer__nnUNetPlans__2d"):
        load_model(nnunet_results.parent, backend="nnunet")
    raw = tmp_path / "raw"
    write_dataset(tmp_path / "d", n=1, size=SIZE, seed=0)
    converted = convert_to_nnunet(tmp_path / "d", raw, 2, "R").folder
    with pytest.raises(ModelLoadError, match="raw dataset"):
        load_model(converted)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p, d: p["configurations"]["2d"]["architecture"].update(network_class_name="os.system"), "not a network from"),
        (lambda p, d: p["configurations"]["2d"]["architecture"].update(
            network_class_name="dynamic_network_architectures.architectures.unet.torch.load"), "not a network from"),
        (lambda p, d: p["configurations"]["2d"]["architecture"]["arch_kwargs"].update(nonlin="subprocess.Popen"), "nonlin"),
        (lambda p, d: p["configurations"]["2d"]["architecture"]["arch_kwargs"].update(nonlin="torch.nn.modules.module.torch.load"), "nonlin"),
        (lambda p, d: p["configurations"]["2d"].update(spacing=[0.5, 0.5]), "does not resample"),
        (lambda p, d: p["configurations"]["2d"].update(normalization_schemes=["MyNorm"]), "normalisation"),
        (lambda p, d: d.update(channel_names={"0": "a", "1": "b"}), "2 input channels"),
        (lambda p, d: d.update(labels={"background": 0, "whole": [1, 2], "core": 2}, regions_class_order=[1, 2]), "region"),
        (lambda p, d: p["configurations"]["2d"]["architecture"]["arch_kwargs"].update(features_per_stage=[4, 8, 32]), "do not fit"),
    ],
)
def test_unsupported_results_folders_get_clear_errors(nnunet_results, tmp_path, edit, match):
    folder = tmp_path / nnunet_results.name
    shutil.copytree(nnunet_results, folder)
    plans = json.loads((folder / "plans.json").read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())
    edit(plans, dataset_json)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    with pytest.raises(ModelLoadError, match=match):
        load_model(folder)


def test_dataset_json_without_our_class_map_uses_nnunet_label_names(nnunet_results, tmp_path):
    folder = tmp_path / nnunet_results.name
    shutil.copytree(nnunet_results, folder)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    del dataset_json[METADATA_KEY]
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    model = load_model(folder, folds=0)
    assert model.class_map.names == ClassMap.default().names and model.num_classes == 6


def test_classes_yaml_round_trip_through_conversion(tmp_path, one_torch_thread):
    """A lab's own classes (ids with a gap) come back from a trained model with ids and colours."""
    pytest.importorskip("nnunetv2")
    folder = tmp_path / "lab"
    classes = {"classes": {0: {"name": "bg", "color": "#000000"}, 2: {"name": "lamella", "color": "#123456"}}}
    folder.mkdir()
    (folder / "classes.yaml").write_text(yaml.safe_dump(classes))
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 10:30] = 2
    write_image(folder / "a.tif", make_image((40, 60)))
    write_labels(folder / "labels" / "a.tif", mask)
    raw = convert_to_nnunet(folder, tmp_path / "raw", 3, "Lab").folder
    results = write_results_folder(tmp_path / "results", raw, folds=(0,))
    model = load_model(results)
    assert model.class_map == ClassMap.load(folder / "classes.yaml") and model.channel_ids == [0, 2]
    pred = model.predict(make_image((40, 60)))
    assert pred.probs.shape == (3, 40, 60) and np.all(pred.probs[1] == 0)
    assert set(np.unique(pred.mask)) <= {0, 2}
