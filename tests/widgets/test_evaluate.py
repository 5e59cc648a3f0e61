"""The Evaluate models dock: filled from an opened folder, runs as the CLI does, shows what it wrote."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_fibsem.core.io.imageio import ImageMetadata, write_image, write_labels
from napari_fibsem.core.io.keypoints import Keypoint, write_keypoints
from napari_fibsem.widgets.evaluate import EvaluateWidget

pytestmark = pytest.mark.gui
PS = 2e-8


def hand_dataset(root: Path) -> Path:
    """3 images (80x120) with exact label masks and ``shifted/`` masks: lamella moved by (3, 4), image 1's needle missed."""
    images, shifted = root / "images", root / "shifted"
    truth = []
    for i in range(3):
        mask = np.zeros((80, 120), np.uint8)
        x0, y0 = 50 + 5 * i, 30
        mask[y0 : y0 + 10, x0 : x0 + 30] = 1
        mask[38:43, 0 : 20 + i] = 2
        name = f"img{i}.tif"
        write_image(images / name, (mask * 60).astype(np.uint8), ImageMetadata(pixel_size=PS))
        write_labels(images / "labels" / name, mask)
        truth += [
            Keypoint(name, "LamellaCentre", x0 + 14.5, y0 + 4.5, PS),
            Keypoint(name, "NeedleTip", 19 + i, 40, PS),
        ]
        moved = np.zeros_like(mask)
        moved[y0 + 4 : y0 + 14, x0 + 3 : x0 + 33] = 1
        if i != 1:
            moved[38:43, 0 : 20 + i] = 2
        write_labels(shifted / name, moved)
    write_keypoints(images / "keypoints.csv", truth)
    return images


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def errors() -> list[str]:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [n.message for n in notification_manager.records if n.severity == NotificationSeverity.ERROR]


@pytest.fixture
def dock(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    images = hand_dataset(tmp_path)
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Evaluate models")
    yield viewer, w, images
    if w._busy:
        w.stop()
        qtbot.waitUntil(lambda: not w._busy, timeout=30_000)


def run_and_wait(w, qtbot) -> None:
    assert w.run()
    qtbot.waitUntil(lambda: not w._busy, timeout=60_000)


def test_opening_a_folder_fills_the_paths_and_lists_the_csv_features(dock):
    viewer, w, images = dock
    viewer.open(str(images), plugin="napari-fibsem")
    f = w.form
    assert f.images_path.text() == str(images)
    assert f.csv_path.text() == str(images / "keypoints.csv")
    assert f.save_path.text() == str(images / "evaluation")
    assert [f.features.item(i).text() for i in range(f.features.count())] == ["LamellaCentre", "NeedleTip"]
    f.images_path.setText("/somewhere/else")
    viewer.open(str(images), plugin="napari-fibsem")  # a person's own choice is kept
    assert f.images_path.text() == "/somewhere/else"


def test_run_matches_the_cli_and_the_table_shows_accuracy_csv(dock, qtbot, tmp_path):
    from typer.testing import CliRunner

    from napari_fibsem.cli import app

    viewer, w, images = dock
    viewer.open(str(images), plugin="napari-fibsem")
    w.form.checkpoints.add(images / "labels", name="exact")
    w.form.checkpoints.add(tmp_path / "shifted")
    w.form.thresholds.setText("10, 4")
    seen = []
    w._relay.progressed.connect(lambda d, t: seen.append((d, t, w.progress.maximum())))
    run_and_wait(w, qtbot)
    assert seen[-1][:2] == (6, 6) and [d for d, *_ in seen] == [1, 2, 3, 4, 5, 6]
    out = images / "evaluation"
    assert w.tabs.currentWidget() is w.results and "Wrote" in w.status.text()
    acc = rows(out / "accuracy.csv")
    table = w.results.table
    assert table.rowCount() == len(acc) == 6  # (ALL + 2 features) x 2 checkpoints
    headers = [table.horizontalHeaderItem(j).toolTip().split()[-1] for j in range(table.columnCount())]
    assert headers == list(acc[0])  # the columns of accuracy.csv, in its order
    for i, r in enumerate(acc):
        for j, key in enumerate(headers):
            shown = table.item(i, j).data(Qt.UserRole)
            if r[key] == "":
                assert np.isnan(shown)
            elif key in ("checkpoint", "feature"):
                assert shown == r[key]
            else:
                assert float(shown) == pytest.approx(float(r[key]))
    shifted_all = next(i for i, r in enumerate(acc) if r["checkpoint"] == "shifted" and r["feature"] == "ALL")
    assert table.item(shifted_all, headers.index("acc_10px")).text() == "83.3%"  # 5 of 6 within 10 px
    assert table.item(shifted_all, headers.index("miss_rate")).text() == "16.7%"

    # the same settings through the CLI write the same files
    cli_yaml = w.save_yaml(tmp_path / "eval.yaml")
    text = cli_yaml.read_text().replace(str(out), str(tmp_path / "cli_out"))
    cli_yaml.write_text(text)
    res = CliRunner().invoke(app, ["evaluate", "--config", str(cli_yaml)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "cli_out").iterdir())
    for name in ("eval.csv", "accuracy.csv"):
        assert (out / name).read_bytes() == (tmp_path / "cli_out" / name).read_bytes()
    for key, picture in w.results.pictures.items():
        assert picture.path == w.results.result.files[key] and not picture.pixmap().isNull()


def test_report_and_image_in_the_viewer(dock, qtbot, monkeypatch, tmp_path):
    from qtpy.QtGui import QDesktopServices

    viewer, w, images = dock
    w.form.csv_path.setText(images / "keypoints.csv")
    w.form.images_path.setText(images)
    w.form.save_path.setText(tmp_path / "out")
    w.form.checkpoints.add(tmp_path / "shifted")
    run_and_wait(w, qtbot)
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    w.results.report_button.click()
    assert opened == [str(tmp_path / "out" / "report.html")]
    w.results.tabs.setCurrentIndex(1)
    qtbot.mouseDClick(w.results.pictures["accuracy_plot"], Qt.LeftButton)  # the plot at full size
    assert opened[-1] == str(tmp_path / "out" / "accuracy_vs_threshold.png")
    w.results.image_combo.setCurrentText("img1.tif")
    w.results.show_button.click()
    names = [ly.name for ly in viewer.layers]
    assert names == ["evaluated: img1.tif", "labelled: img1.tif", "detected (shifted): img1.tif"]
    truth, found = viewer.layers["labelled: img1.tif"], viewer.layers["detected (shifted): img1.tif"]
    assert list(truth.features["feature"]) == ["LamellaCentre", "NeedleTip"]
    np.testing.assert_allclose(truth.data, [[34.5, 69.5], [40, 20]])
    np.testing.assert_allclose(found.data, [[38.5, 72.5]])  # moved by (3, 4); the needle was missed
    w.results.image_combo.setCurrentText("img0.tif")
    w.results.show_button.click()  # replaces, not stacks
    assert [ly.name for ly in viewer.layers] == [n.replace("img1", "img0") for n in names]


def test_stop_writes_nothing(dock, qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_FIBSEM_NOTHREADS", "1")  # the stop lands between two images, deterministically
    _viewer, w, images = dock
    w.form.prefill(images)
    w.form.checkpoints.add(tmp_path / "shifted")
    w._relay.progressed.connect(lambda d, t: w.stop() if d == 2 else None)
    assert w.run()
    assert "stopped after 2 of 3" in w.status.text() and "no tables, plots or report written" in w.status.text()
    assert not (images / "evaluation").exists()
    assert w.run_button.isEnabled() and not w.stop_button.isEnabled()


def test_bad_inputs_notify_naming_the_file_and_write_nothing(dock, qtbot, tmp_path):
    _viewer, w, images = dock
    w.run_button.click()  # nothing filled in
    assert "data_path: empty" in errors()[-1] and "checkpoints: none" in errors()[-1]
    w.form.prefill(images)
    w.form.checkpoints.add(tmp_path / "shifted")
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,feature,x\nimg0.tif,NeedleTip,3\n")
    w.form.csv_path.setText(bad)
    run_and_wait(w, qtbot)
    assert str(bad) in errors()[-1] and "missing column" in errors()[-1]
    assert str(bad) in w.status.text()
    write_keypoints(bad, [Keypoint("lost.tif", "NeedleTip", 1, 1, PS)])
    run_and_wait(w, qtbot)
    assert "lost.tif" in errors()[-1] and str(bad) in errors()[-1]
    w.form.csv_path.setText(images / "keypoints.csv")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    w.form.checkpoints.add(broken)
    run_and_wait(w, qtbot)
    assert "broken.pt" in errors()[-1]
    assert not (images / "evaluation").exists()


def test_names_stay_distinct_and_features_narrow_the_run(dock, qtbot, tmp_path):
    _viewer, w, images = dock
    (tmp_path / "b").mkdir()
    first = w.form.checkpoints.add(tmp_path / "shifted")
    second = w.form.checkpoints.add(tmp_path / "b" / "shifted")
    assert (first, second) == ("shifted", "b-shifted")
    w.form.checkpoints.selectRow(1)
    w.form.remove_button.click()
    assert w.form.checkpoints.names() == ["shifted"]
    w.form.prefill(images)
    w.form.features.item(1).setCheckState(Qt.Unchecked)  # NeedleTip
    w.form.min_size.setValue(5)
    cfg = w.form.config()
    assert cfg.features == ["LamellaCentre"] and cfg.min_size == 5 and cfg.device is None
    run_and_wait(w, qtbot)
    assert {r["feature"] for r in rows(images / "evaluation" / "eval.csv")} == {"LamellaCentre"}
    w.form.features.item(0).setCheckState(Qt.Unchecked)
    assert not w.run() and "features: none ticked" in errors()[-1]
