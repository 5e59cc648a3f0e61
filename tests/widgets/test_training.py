"""The training widget through a real napari viewer: form -> core config, threaded run, Stop, YAML.

Networks are tiny (timm resnet10t encoder, depth 3, decoder 32/16/8) on six synthetic 64x64 scenes,
so a run of a few epochs takes seconds on a CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from PIL import Image
from qtpy.QtCore import QTimer

from napari_fibsem.core.synthetic.dataset import write_dataset
from napari_fibsem.core.training import load_config
from napari_fibsem.widgets._plot import EpochPlot
from napari_fibsem.widgets.training import TrainingWidget

pytestmark = pytest.mark.gui

TINY_KWARGS = "{encoder_depth: 3, decoder_channels: [32, 16, 8]}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train_widget") / "ds"
    write_dataset(folder, n=6, size=(64, 64), seed=0)
    return folder


@pytest.fixture
def widget(make_napari_viewer, qtbot) -> TrainingWidget:
    viewer = make_napari_viewer()
    w = TrainingWidget(viewer)
    viewer.window.add_dock_widget(w, name="Training")
    yield w
    if w.running:  # a failed test must not leave a run going into the next one
        w.stop()
        qtbot.waitUntil(lambda: not w.running, timeout=30_000)


def fill_tiny(w: TrainingWidget, data: Path, save: Path, epochs: int = 3) -> None:
    """What a user types for a tiny CPU run (as examples/train_config.yaml, with 6 images)."""
    f = w.form
    f.data_paths.line.setText(str(data))
    f.save_path.line.setText(str(save))
    f.architecture.setCurrentText("Unet")
    f.encoder.setCurrentText("tu-resnet10t")
    f.model_kwargs.setText(TINY_KWARGS)
    f.epochs.setValue(epochs)
    f.batch_size.setValue(2)
    f.lr.setText("3e-3")
    f.crop_size.setText("64")
    f.split.setValue(0.35)
    f.device.setCurrentText("cpu")
    f.num_workers.setValue(0)


def test_threaded_run_end_to_end(widget, dataset, tmp_path, qtbot):
    """Start trains in a worker thread: the UI keeps ticking, the form is locked, progress and the
    plot follow every epoch, and best.pt/last.pt are written and shown."""
    w = widget
    save = tmp_path / "run"
    fill_tiny(w, dataset, save, epochs=3)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    try:
        first_report: list[float] = []  # when set-up (imports, model, data) ended and training began
        w._relay.progressed.connect(lambda p: first_report.append(time.perf_counter()))
        live: list[int] = []  # plotted epochs each time the run sent its history
        w._relay.history.connect(lambda records: live.append(len(w.plot.points("train_loss"))))
        assert w.start()
        assert w.running and not w.form.isEnabled() and not w.start_button.isEnabled()
        assert w.stop_button.isEnabled()
        qtbot.waitUntil(lambda: not w.running, timeout=60_000)
    finally:
        timer.stop()

    assert w.error is None, w.error
    result = w.result
    assert result is not None and not result.cancelled
    assert (save / "best.pt").is_file() and (save / "last.pt").is_file()
    assert result.best_path == save / "best.pt" and result.last_path == save / "last.pt"
    assert w.best_path.text() == str(save / "best.pt") and w.last_path.text() == str(save / "last.pt")
    assert "best mean foreground IoU" in w.status.text()
    # one point per epoch for the training loss and the validation IoU, drawn while the run went on
    assert live == [1, 2, 3]
    assert [e for e, _ in w.plot.points("train_loss")] == [1, 2, 3]
    assert [e for e, _ in w.plot.points("mean_fg_iou")] == [1, 2, 3]
    assert w.plot.points("train_loss")[-1][1] == pytest.approx(result.history[-1]["train_loss"])
    assert w.progress.maximum() == result.total_steps > 0 and w.progress.value() == w.progress.maximum()
    assert w.form.isEnabled() and w.start_button.isEnabled() and not w.stop_button.isEnabled()
    assert "epoch 3/3" in w.log.toPlainText()
    # the UI thread kept processing events: while training, a 10 ms timer never paused for long; during
    # set-up, loading torch and smp's extension modules holds the GIL for a few hundred ms at a time
    training = [t for t in ticks if t >= first_report[0]]
    train_gaps = [b - a for a, b in zip(training, training[1:])]
    train_time = ticks[-1] - first_report[0]
    assert len(training) > 0.3 * train_time / 0.01, (len(training), train_time)
    assert max(train_gaps) < 0.5, max(train_gaps)
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 2.0


def test_stop_saves_last_and_says_stopped(widget, dataset, tmp_path, qtbot):
    w = widget
    save = tmp_path / "run"
    fill_tiny(w, dataset, save, epochs=200)
    assert w.start()
    qtbot.waitUntil(lambda: w.progress.maximum() > 0 and w.progress.value() >= 2, timeout=30_000)
    w.stop_button.click()
    assert "stopping" in w.status.text()
    qtbot.waitUntil(lambda: not w.running, timeout=30_000)
    result = w.result
    assert result is not None and result.cancelled and w.error is None
    assert (save / "last.pt").is_file() and result.last_path == save / "last.pt"
    assert 2 <= result.global_step < result.total_steps
    assert "Stopped" in w.status.text() and "last.pt" in w.status.text()
    assert w.form.isEnabled()

    # starting again into the same folder without "replace" is refused by the core, shown in the widget
    assert w.start()
    qtbot.waitUntil(lambda: not w.running, timeout=30_000)
    assert w.result is None and "already holds a run" in w.problems.text().replace("\u200b", "")
    assert not w.problems.isHidden() and w.form.isEnabled()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("lr", "-0.001", "Learning rate (lr): Input should be greater than 0"),
        ("lr", "fast", "Learning rate (lr): Input should be a valid number"),
        ("data", "missing", "Image folders (data_paths): "),
        ("model_kwargs", "{encoder_name: x}", "Model options (model_kwargs): ['encoder_name'] are set by"),
    ],
)
def test_bad_values_are_shown_and_nothing_starts(widget, dataset, tmp_path, field, value, expected):
    w = widget
    fill_tiny(w, dataset, tmp_path / "run")
    if field == "lr":
        w.form.lr.setText(value)
    elif field == "data":
        w.form.data_paths.line.setText(str(tmp_path / value))
    else:
        w.form.model_kwargs.setText(value)
    assert not w.start()
    text = w.problems.text().replace("\u200b", "")
    assert expected in text and not w.problems.isHidden()
    if field == "data":
        assert f"{tmp_path / value} does not exist" in text
    assert not w.running and w._worker is None and not (tmp_path / "run").exists()
    assert w.form.isEnabled() and w.start_button.isEnabled()


def test_yaml_load_fills_form_and_save_round_trips(widget, dataset, tmp_path):
    w = widget
    example = yaml.safe_load((Path(__file__).parents[2] / "examples" / "train_config.yaml").read_text())
    example.update(data_paths=[str(dataset)], label_paths=[str(dataset / "labels")],
                   save_path=str(tmp_path / "run"), crop_size=[64, 96], device="cpu", epochs=7)  # fmt: skip
    src = tmp_path / "in.yaml"
    src.write_text(yaml.safe_dump(example))
    assert w.load_config_file(src)
    assert w.problems.isHidden()
    f = w.form
    assert f.data_paths.paths() == [str(dataset)]
    assert f.label_paths.paths() == [str(dataset / "labels")]
    assert f.save_path.paths() == [str(tmp_path / "run")] and f.checkpoint.paths() == []
    assert f.encoder.currentText() == "tu-resnet10t" and f.architecture.currentText() == "Unet"
    assert yaml.safe_load(f.model_kwargs.text()) == example["model_kwargs"]
    assert (f.epochs.value(), f.batch_size.value(), float(f.lr.text())) == (7, 4, 3e-3)
    assert f.crop_size.text() == "64x96" and f.split.value() == 0.25 and f.device.currentText() == "cpu"
    assert f.num_workers.value() == 0 and f.augment.isChecked() and f.overwrite.isChecked()
    assert f.config() == load_config(src)  # keys the form doesn't show (loss, note, seed ...) are kept

    # edit in the form, save, and the CLI's loader reads exactly the form's config back
    f.epochs.setValue(2)
    f.augment.setChecked(False)
    f.crop_size.setText("")
    out = tmp_path / "out.yaml"
    assert w.save_config_file(out)
    back = load_config(out)
    assert back == f.config()
    assert back.epochs == 2 and not back.augment.enabled and back.crop_size is None
    assert back.note == example["note"] and back.loss.dice == 1.0 and back.augment.rotate == 10


def test_yaml_with_missing_folders_loads_with_a_warning(widget, tmp_path):
    w = widget
    src = tmp_path / "elsewhere.yaml"
    src.write_text(
        yaml.safe_dump({"data_paths": ["/nowhere/data"], "save_path": "/nowhere/run", "epochs": 5})
    )
    assert w.load_config_file(src)
    text = w.problems.text().replace("\u200b", "")
    assert "Image folders (data_paths): /nowhere/data does not exist" in text
    assert w.form.epochs.value() == 5 and w.form.data_paths.paths() == ["/nowhere/data"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: -1\nlerning_rate: 0.1\n")
    assert not w.load_config_file(bad)
    text = w.problems.text().replace("\u200b", "")
    assert "not loaded" in text and "epochs" in text and "lerning_rate" in text
    assert w.form.epochs.value() == 5  # the form was left as it was


def test_image_folder_from_layer(widget, dataset):
    w = widget
    assert not w.use_layer_folder()  # no layers yet
    w.viewer.open(str(dataset), plugin="napari-fibsem")
    assert w.use_layer_folder()
    assert w.form.data_paths.paths() == [str(dataset)]


def test_opens_from_the_plugin_menu(make_napari_viewer):
    """The manifest's widget contribution builds the widget with the viewer injected."""
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-fibsem", "Train segmentation model")
    assert isinstance(widget, TrainingWidget) and widget.form.epochs.value() == 50


def test_nothreads_runs_inline(widget, dataset, tmp_path, monkeypatch):
    """NAPARI_FIBSEM_NOTHREADS=1: Start returns when the run is over (for debugging and scripts)."""
    monkeypatch.setenv("NAPARI_FIBSEM_NOTHREADS", "1")
    w = widget
    fill_tiny(w, dataset, tmp_path / "run", epochs=1)
    assert w.start()
    assert not w.running and w.error is None and w.result is not None
    assert w.result.epochs_completed == 1 and (tmp_path / "run" / "last.pt").is_file()
    assert [e for e, _ in w.plot.points("train_loss")] == [1] and w.form.isEnabled()


def test_input_scale_and_mixed_precision_fields(widget, dataset, tmp_path):
    """The scale reaches the config only when chosen (else a fine-tuned checkpoint keeps its own),
    survives a save/load round trip, and the mixed-precision box is the config's ``amp``."""
    w = widget
    fill_tiny(w, dataset, tmp_path / "run")
    f = w.form
    cfg = f.config()
    assert "input_scale" not in cfg.model_fields_set and cfg.input_scale == 1.0 and cfg.amp
    out = tmp_path / "unset.yaml"
    assert w.save_config_file(out)
    assert "input_scale" not in yaml.safe_load(out.read_text())
    assert w.load_config_file(out) and "input_scale" not in f.config().model_fields_set

    f.input_scale.setValue(0.5)
    f.amp.setChecked(False)
    cfg = f.config()
    assert "input_scale" in cfg.model_fields_set and cfg.input_scale == 0.5 and not cfg.amp
    out = tmp_path / "half.yaml"
    assert w.save_config_file(out)
    saved = yaml.safe_load(out.read_text())
    assert saved["input_scale"] == 0.5 and saved["amp"] is False
    f.input_scale.setValue(1.0)
    assert w.load_config_file(out)
    assert f.input_scale.value() == 0.5 and not f.amp.isChecked()
    assert f.config() == load_config(out)

    w.viewer.window._qt_window.resize(1000, 1000)
    w.viewer.screenshot(canvas_only=False)  # a hidden window's first grab is black
    shot = w.viewer.screenshot(canvas_only=False)
    Image.fromarray(shot).save(tmp_path / "training_widget.png")  # looked at: both fields in the form
    assert shot[..., :3].std() > 10


def test_plot_lines_show_the_points(qtbot):
    """The drawn lines hold exactly what ``points()`` reports: non-finite and missing values are
    dropped from their own curve only, and the legend shows each curve's latest value."""
    plot = EpochPlot()
    qtbot.addWidget(plot)
    records = [
        {"epoch": 1, "train_loss": 0.9, "val_loss": 1.0, "mean_fg_iou": 0.2},
        {"epoch": 2, "train_loss": 0.7, "val_loss": float("nan"), "mean_fg_iou": 0.4},
        {"epoch": 3, "train_loss": 0.5, "mean_fg_iou": 0.5},
    ]
    plot.set_epochs(10)
    plot.set_history(records)
    plot.draw()
    for key, line in plot.lines.items():
        xs, ys = line.get_data()
        assert list(zip(xs, ys)) == plot.points(key)
    assert plot.points("val_loss") == [(1, 1.0)] and len(plot.points("train_loss")) == 3
    assert "train loss 0.5" in [t.get_text() for t in plot.figure.legends[0].get_texts()]
    lo, hi = plot._left.get_ylim()
    assert lo < 0.5 and hi > 1.0  # the losses fit their axis
    plot.clear()
    assert all(len(line.get_xdata()) == 0 for line in plot.lines.values())
