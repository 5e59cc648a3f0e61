"""Journey (f): compare a model with the masks a person trusts, on labelled keypoints, from the dock.

A microscopist opens a dataset folder, opens "Evaluate models" from the Plugins menu, adds a model
file and a folder of masks with the dock's buttons, sets the thresholds, presses Evaluate, watches
the progress, reads the accuracy table, looks at one image's points and the plots, and then sees a
broken CSV refused with a notification that names it.
"""

from __future__ import annotations

import csv

import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_fibsem.core.synthetic.dataset import write_dataset

pytestmark = pytest.mark.gui


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def random_bundle(tmp_path):
    """A random-weight U-Net bundle: it finds little, which the table must show as misses."""
    from napari_fibsem.core.models import create_model, save_bundle

    model = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))
    return save_bundle(tmp_path / "models" / "random.pt", model)


def test_evaluate_a_model_against_trusted_masks(
    viewer, open_dock, screenshot, qtbot, monkeypatch, tmp_path, random_bundle
):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    folder = tmp_path / "lamellae"
    write_dataset(folder, 4, size=(192, 288), seed=3)
    viewer.open(str(folder), plugin="napari-fibsem")
    w = open_dock("Evaluate models")
    f = w.form
    assert f.csv_path.text() == str(folder / "keypoints.csv")  # prefilled from the opened folder
    assert f.images_path.text() == str(folder) and f.save_path.text() == str(folder / "evaluation")

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(random_bundle)], ""))
    f.add_model_button.click()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder / "labels"))
    f.add_folder_button.click()
    assert f.checkpoints.names() == ["random", "labels"]
    f.thresholds.clear()
    qtbot.keyClicks(f.thresholds, "50, 20, 5")
    screenshot(viewer, "01-dock-filled")

    shots = []
    w._relay.progressed.connect(
        lambda done, total: (
            shots.append(screenshot(viewer, "02-running")) if done == total // 2 and not shots else None
        )
    )
    qtbot.mouseClick(w.run_button, Qt.LeftButton)
    assert not w.run_button.isEnabled() and w.stop_button.isEnabled()
    qtbot.waitUntil(lambda: w.run_button.isEnabled(), timeout=120_000)
    assert shots, "no progress arrived while running"

    out = folder / "evaluation"
    acc, ev = _rows(out / "accuracy.csv"), _rows(out / "eval.csv")
    points = len(_rows(folder / "keypoints.csv"))
    assert len(ev) == 2 * points and {r["checkpoint"] for r in ev} == {"random", "labels"}
    table = w.results.table
    assert w.tabs.currentWidget() is w.results
    assert table.rowCount() == len(acc)
    columns = [table.horizontalHeaderItem(j).toolTip().split()[-1] for j in range(table.columnCount())]
    assert columns == list(acc[0])
    for i, r in enumerate(acc):
        shown = {c: table.item(i, j).text() for j, c in enumerate(columns)}
        assert (shown["checkpoint"], shown["feature"], shown["n"], shown["found"]) == (
            r["checkpoint"], r["feature"], r["n"], r["found"],
        )  # fmt: skip
        for c in ("miss_rate", "acc_50px", "acc_20px", "acc_5px"):
            assert shown[c] == f"{100 * float(r[c]):.1f}%", (r["checkpoint"], r["feature"], c)
    labels_all = next(i for i, r in enumerate(acc) if r["checkpoint"] == "labels" and r["feature"] == "ALL")
    assert (
        table.item(labels_all, columns.index("acc_5px")).text() == "100.0%"
    )  # the masks the points came from
    found_in_eval = sum(r["found"] == "True" for r in ev if r["checkpoint"] == "random")
    random_all = next(i for i, r in enumerate(acc) if r["checkpoint"] == "random" and r["feature"] == "ALL")
    assert int(table.item(random_all, columns.index("found")).text()) == found_in_eval

    w.results.image_combo.setCurrentIndex(1)
    name = w.results.image_combo.currentText()
    w.results.show_button.click()
    assert f"labelled: {name}" in viewer.layers and f"detected (labels): {name}" in viewer.layers
    screenshot(viewer, "03-results-table")
    w.results.tabs.setCurrentIndex(1)  # Accuracy vs threshold
    screenshot(viewer, "04-accuracy-plot")

    # a CSV that is not a keypoints CSV: one notification naming it, nothing written
    w.tabs.setCurrentIndex(0)
    bad = tmp_path / "points_from_elsewhere.csv"
    bad.write_text("image;x;y\nimg0.tif;3;4\n")
    f.csv_path.line.clear()
    qtbot.keyClicks(f.csv_path.line, str(bad))
    f.save_path.line.clear()
    qtbot.keyClicks(f.save_path.line, str(tmp_path / "second"))
    before = len(notification_manager.records)
    qtbot.mouseClick(w.run_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.run_button.isEnabled(), timeout=60_000)
    new = [n for n in notification_manager.records[before:] if n.severity == NotificationSeverity.ERROR]
    assert len(new) == 1 and str(bad) in new[0].message and "missing column" in new[0].message
    assert not (tmp_path / "second").exists()
    assert str(bad) in w.status.text()
    qtbot.wait(800)  # the notification slides in
    screenshot(viewer, "05-bad-csv")
