"""Keypoint evaluation: hand-computed distances, accuracy tables, plots, report, config errors."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import yaml

from napari_fibsem.core.errors import ConfigError
from napari_fibsem.core.evaluation.run import load_eval_config, run_evaluation
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import ImageMetadata, write_image, write_labels
from napari_fibsem.core.io.keypoints import Keypoint, read_keypoints, write_keypoints
from napari_fibsem.core.synthetic.dataset import write_dataset

PS = 2e-8


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _hand_dataset(root):
    """3 images (80x120): a lamella block, a needle entering from the left. Returns truth points."""
    images, labels, shifted = root / "images", root / "images" / "labels", root / "shifted"
    truth = []
    for i in range(3):
        mask = np.zeros((80, 120), np.uint8)
        x0, y0 = 50 + 5 * i, 30
        mask[y0 : y0 + 10, x0 : x0 + 30] = 1  # lamella 30x10
        mask[38:43, 0 : 20 + i] = 2  # needle from the left border, tip at x = 19 + i
        name = f"img{i}.tif"
        write_image(images / name, (mask * 60).astype(np.uint8), ImageMetadata(pixel_size=PS))
        write_labels(labels / name, mask)
        truth += [
            Keypoint(name, "LamellaCentre", x0 + 14.5, y0 + 4.5, PS),
            Keypoint(name, "LamellaLeftEdge", x0, y0 + 4.5, PS),
            Keypoint(name, "NeedleTip", 19 + i, 40, PS),
        ]
        moved = np.zeros_like(mask)
        moved[y0 + 4 : y0 + 14, x0 + 3 : x0 + 33] = 1  # lamella moved by (+3, +4): 5 px away
        if i != 1:
            moved[38:43, 0 : 20 + i] = 2  # image 1: the needle is missed
        write_labels(shifted / name, moved)
    write_keypoints(root / "truth.csv", truth)
    return truth


def _config(root, **extra):
    cfg = {
        "data_path": "truth.csv",
        "images_path": "images",
        "save_path": "out",
        "checkpoints": [{"masks": "images/labels", "name": "exact"}, {"masks": "shifted", "name": "shifted"}],
        "thresholds": [10, 4],
        **extra,
    }
    (root / "eval.yaml").write_text(yaml.safe_dump(cfg))
    return load_eval_config(root / "eval.yaml")


def test_two_checkpoints_give_hand_computed_distances_and_accuracy(tmp_path):
    _hand_dataset(tmp_path)
    progress = []
    result = run_evaluation(_config(tmp_path, save_det_plot=True), on_progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (6, 6)  # 3 images x 2 checkpoints
    rows = _rows(tmp_path / "out" / "eval.csv")
    assert len(rows) == 18
    for r in rows:
        if r["checkpoint"] == "exact":
            assert r["found"] == "True" and float(r["distance_px"]) == 0.0
        elif r["feature"] == "NeedleTip" and r["filename"] == "img1.tif":
            assert r["found"] == "False" and "no 'manipulator' pixels" in r["reason"]
            assert r["distance_px"] == ""
        elif r["feature"] == "NeedleTip":
            assert float(r["distance_px"]) == 0.0
        else:  # lamella features: moved by (3, 4)
            assert (float(r["dx_px"]), float(r["dy_px"])) == (3.0, 4.0)
            assert float(r["distance_px"]) == 5.0
            assert float(r["distance_m"]) == pytest.approx(5 * PS)
    acc = {(r["checkpoint"], r["feature"]): r for r in _rows(tmp_path / "out" / "accuracy.csv")}
    assert float(acc["exact", "ALL"]["acc_4px"]) == 1.0 and float(acc["exact", "ALL"]["miss_rate"]) == 0.0
    shifted = acc["shifted", "ALL"]
    assert int(shifted["n"]) == 9 and int(shifted["found"]) == 8
    assert float(shifted["miss_rate"]) == pytest.approx(1 / 9)
    assert float(shifted["acc_10px"]) == pytest.approx(8 / 9)  # 6 lamella at 5 px + 2 needles at 0 px
    assert float(shifted["acc_4px"]) == pytest.approx(2 / 9)  # only the two found needles
    assert float(shifted["mean_px"]) == pytest.approx(30 / 8)
    assert float(acc["shifted", "NeedleTip"]["miss_rate"]) == pytest.approx(1 / 3)
    assert result.accuracy[0]["feature"] == "ALL"
    out = tmp_path / "out"
    for name in ("distance_scatter.png", "distance_histogram.png", "accuracy_vs_threshold.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (out / "det_plots" / "shifted").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    report = (out / "report.md").read_text()
    assert "| shifted | 9 | 8 | 11.1% | 3.8 | 5.0 | 88.9% | 22.2% |" in report
    assert "<td>shifted</td>" in (out / "report.html").read_text()


def test_replot_without_running_models(tmp_path):
    _hand_dataset(tmp_path)
    run_evaluation(_config(tmp_path))
    before = (tmp_path / "out" / "eval.csv").read_text()
    (tmp_path / "shifted").rename(tmp_path / "gone")  # the models are not needed any more
    result = run_evaluation(_config(tmp_path, run_eval=False, thresholds=[6]))
    assert (tmp_path / "out" / "eval.csv").read_text() == before
    shifted = next(r for r in result.accuracy if r["checkpoint"] == "shifted" and r["feature"] == "ALL")
    assert shifted["acc_6px"] == pytest.approx(8 / 9)


def test_synthetic_set_against_perturbed_labels_and_a_real_model(tmp_path, monkeypatch):
    """Labels moved by known offsets: every distance is the offset (the masks are exact)."""
    from napari_fibsem.core.models import create_model, save_bundle

    write_dataset(tmp_path / "ds", 3, size=(128, 192), seed=4)
    points = read_keypoints(tmp_path / "ds" / "keypoints.csv")
    offsets = [(3.0, 4.0), (-6.0, 8.0), (0.0, -12.0)]
    moved = [
        Keypoint(p.filename, p.feature, p.x + offsets[i % 3][0], p.y + offsets[i % 3][1], p.pixel_size)
        for i, p in enumerate(points)
    ]
    write_keypoints(tmp_path / "moved.csv", moved)
    model = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))
    save_bundle(tmp_path / "random.pt", model)
    loads = []
    from napari_fibsem.core import models
    from napari_fibsem.core.models.loader import load_model

    def counting_load(path, **kw):
        loads.append(path)
        return load_model(path, **kw)

    cfg = {
        "data_path": "moved.csv",
        "images_path": "ds",
        "save_path": "out",
        "checkpoints": ["ds/labels", "random.pt"],
    }
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(models, "load_model", counting_load)
    result = run_evaluation(load_eval_config(tmp_path / "eval.yaml"))
    assert len(loads) == 1  # one model, loaded once for all images
    rows = [r for r in result.rows if r["checkpoint"] == "labels"]
    assert len(rows) == len(points)
    for i, r in enumerate(rows):
        assert r["found"] is True
        assert r["distance_px"] == pytest.approx(math.hypot(*offsets[i % 3]), abs=1e-9)
        assert r["distance_m"] == pytest.approx(r["distance_px"] * points[i].pixel_size)
    random_rows = [r for r in result.rows if r["checkpoint"] == "random"]
    assert len(random_rows) == len(points)
    assert all(r["found"] or r["reason"] for r in random_rows)


def test_openfibsem_csv_and_bare_filenames_are_read(tmp_path):
    truth = _hand_dataset(tmp_path)
    lines = ["filename,feature,px.x,px.y,pixelsize,corrected"]
    lines += [f"{p.filename[:-4]},{p.feature},{p.x},{p.y},{PS},False" for p in truth]
    (tmp_path / "truth.csv").write_text("\n".join(lines) + "\n")
    result = run_evaluation(_config(tmp_path, features=["LamellaCentre"]))
    assert {r["feature"] for r in result.rows} == {"LamellaCentre"}
    assert all(r["distance_px"] == 0 for r in result.rows if r["checkpoint"] == "exact")


def test_config_errors_name_every_bad_key(tmp_path):
    _hand_dataset(tmp_path)
    bad = {
        "data_path": "nope.csv",
        "images_path": "images",
        "save_path": "out",
        "checkpoints": [{"masks": "images/labels"}, {"path": "a.pt", "masks": "b"}],
        "thresholds": [10, -1],
        "features": ["NeedleTop"],
        "show_plots": True,
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError) as err:
        load_eval_config(tmp_path / "bad.yaml")
    text = str(err.value)
    assert "bad.yaml" in text and "evaluation config" in text
    for key in ("checkpoints[1]", "thresholds", "features", "show_plots: unknown key"):
        assert key in text, key
    ok = yaml.safe_load((tmp_path / "bad.yaml").read_text())
    ok.update(checkpoints=["images/labels", "missing.pt"], thresholds=[5], features=None)
    ok.pop("show_plots")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(ok))
    with pytest.raises(ConfigError) as err:
        load_eval_config(tmp_path / "bad.yaml")
    assert "data_path" in str(err.value) and "missing.pt does not exist" in str(err.value)


def test_missing_images_are_one_error_before_any_output(tmp_path):
    truth = _hand_dataset(tmp_path)
    write_keypoints(tmp_path / "truth.csv", [*truth, Keypoint("lost.tif", "LamellaCentre", 1, 1, PS)])
    with pytest.raises(FileNotFoundError, match=r"truth.csv: 1 image\(s\) not found.*lost.tif"):
        run_evaluation(_config(tmp_path))
    assert not (tmp_path / "out" / "eval.csv").exists()


def test_mask_checkpoint_with_labels_outside_the_class_map_names_the_file(tmp_path):
    _hand_dataset(tmp_path)
    write_labels(tmp_path / "shifted" / "img0.tif", np.full((80, 120), 9, np.uint8))
    with pytest.raises(ValueError, match="img0.tif"):
        run_evaluation(_config(tmp_path))
    assert ClassMap.default().num_classes == 6


def test_example_config_uses_only_known_keys():
    from pathlib import Path

    from napari_fibsem.core.evaluation.run import EvalConfig

    example = Path(__file__).resolve().parents[3] / "examples" / "eval_config.yaml"
    cfg = EvalConfig.model_validate(yaml.safe_load(example.read_text()))
    assert [c.name for c in cfg.checkpoints] == ["best", "onnx", "ground-truth-masks"]
    assert cfg.thresholds == [250, 100, 50, 25, 10]
