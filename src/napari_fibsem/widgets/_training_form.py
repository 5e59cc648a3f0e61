"""The training config form: the keys people change most, in the same YAML the CLI reads.

The form shows a dozen keys of :class:`~napari_fibsem.core.training.TrainingConfig`; every other
key (loss, scheduler, loggers, class map ...) is kept from the last YAML loaded, so ``Load config``
→ edit → ``Save config`` or Start loses nothing. Validation is the core's: the form builds a plain
mapping and :func:`~napari_fibsem.core.training.parse_config` checks it and reports each problem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.training.config import TrainingConfig
from napari_fibsem.core.training.config_file import (
    load_config_allowing_missing_folders,
    parse_config,
    save_config,
)

SEP = ";"
"""Between several folders in one field (``:`` and ``,`` occur in Windows paths and names; ``;`` rarely)."""

ARCHITECTURES = ("Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "PAN", "DeepLabV3",
                 "DeepLabV3Plus", "UPerNet", "Segformer")  # fmt: skip
ENCODERS = ("resnet34", "resnet18", "resnet50", "efficientnet-b0", "efficientnet-b3", "mobilenet_v2",
            "tu-resnet10t")  # fmt: skip
DEVICES = ("auto", "cpu", "cuda", "mps")

LABELS = {
    "data_paths": "Image folders",
    "label_paths": "Label folders",
    "save_path": "Save folder",
    "checkpoint": "Start from",
    "architecture": "Architecture",
    "encoder": "Encoder",
    "model_kwargs": "Model options",
    "epochs": "Epochs",
    "batch_size": "Batch size",
    "lr": "Learning rate",
    "crop_size": "Crop size",
    "input_scale": "Input scale",
    "amp": "Mixed precision",
    "split": "Validation split",
    "device": "Device",
    "num_workers": "Loader workers",
    "augment": "Augmentation",
    "overwrite": "Replace run",
}
"""Form labels of the config keys, so error messages name what the user sees (and the YAML key)."""

_CROP = re.compile(r"^\s*(\d+)\s*(?:[x×,\s]\s*(\d+))?\s*$")


def _default(key: str) -> Any:
    field = TrainingConfig.model_fields[key]
    return field.default_factory() if field.default_factory is not None else field.default


def label_problems(problems: list[str]) -> list[str]:
    """``lr: must be > 0`` -> ``Learning rate (lr): must be > 0``: the form's name first, then the key."""
    out = []
    for line in problems:
        line = line.replace(": required key is missing", ": required")
        key = re.split(r"[.\[:]", line, maxsplit=1)[0]
        out.append(
            f"{LABELS[key]} ({line.split(':', 1)[0]}):{line.split(':', 1)[1]}" if key in LABELS else line
        )
    return out


class PathField(QWidget):
    """A line edit with a browse button; ``mode`` is ``dir``, ``dirs`` (appends with ``;``) or ``file``."""

    def __init__(self, mode: str, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = mode
        self.line = QLineEdit()
        self.line.setPlaceholderText(placeholder)
        self.line.setToolTip(placeholder)
        self.browse = _small_button("…", "Browse")
        self.browse.clicked.connect(self._on_browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        row.addWidget(self.line)
        row.addWidget(self.browse)

    def paths(self) -> list[str]:
        return [s.strip() for s in self.line.text().split(SEP) if s.strip()]

    def set_paths(self, paths: list[Path] | Path | None) -> None:
        values = [] if paths is None else [paths] if isinstance(paths, (str, Path)) else paths
        self.line.setText(f"{SEP} ".join(str(p) for p in values))
        self.line.setCursorPosition(0)

    def add_button(self, text: str, tooltip: str) -> QPushButton:
        """Another small button after the browse one (e.g. "take the folder from a layer")."""
        button = _small_button(text, tooltip)
        self.layout().addWidget(button)
        return button

    def _on_browse(self) -> None:
        start = self.paths()[-1] if self.paths() else ""
        if self.mode == "file":
            chosen, _ = QFileDialog.getOpenFileName(
                self, "Choose a checkpoint", start, "Checkpoints (*.pt *.pth);;All files (*)"
            )
        else:
            chosen = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        if chosen:
            self.set_paths([*self.paths(), chosen] if self.mode == "dirs" else [chosen])


class TrainingForm(QWidget):
    """The config form; :meth:`config` validates it, :meth:`set_config` fills it from a config."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base: dict[str, Any] = {}  # keys the form does not show, from the last YAML loaded

        self.data_paths = PathField("dirs", "folders of images; several joined by ;")
        self.label_paths = PathField("dirs", "default: <image folder>/labels")
        self.save_path = PathField("dir", "for best.pt, last.pt, metrics.csv")
        self.checkpoint = PathField("file", "optional .pt: resume or fine-tune")
        self.architecture = _combo(ARCHITECTURES, _default("architecture"))
        self.encoder = _combo(ENCODERS, _default("encoder"))
        self.model_kwargs = QLineEdit()
        self.model_kwargs.setPlaceholderText("optional, e.g. {encoder_depth: 4}")
        self.model_kwargs.setToolTip(
            "Extra segmentation_models_pytorch arguments as a YAML mapping (model_kwargs)"
        )
        self.epochs = _spin(1, 100_000, _default("epochs"))
        self.batch_size = _spin(1, 4096, _default("batch_size"))
        self.lr = QLineEdit(_fmt_float(_default("lr")))
        self.crop_size = QLineEdit(str(_default("crop_size")[0]))
        self.crop_size.setPlaceholderText("whole images")
        self.crop_size.setToolTip(
            "Random training crops: 512 (square) or 512x768 (height x width); empty: whole images"
        )
        self.input_scale = QDoubleSpinBox()
        self.input_scale.setRange(0.05, 1.0)
        self.input_scale.setSingleStep(0.05)
        self.input_scale.setDecimals(3)
        self.input_scale.setValue(_default("input_scale"))
        self.input_scale.setToolTip(
            "Train and predict at this fraction of the image size (0.5: half; about 4x less work). "
            "Stored in the model; predictions come back at full size. Fine-tuning keeps the "
            "checkpoint's scale unless you set one here"
        )
        self._scale_set = False  # only a scale the user (or the YAML) chose overrides a checkpoint's
        self.input_scale.valueChanged.connect(self._on_scale_changed)
        self.split = QDoubleSpinBox()
        self.split.setRange(0.0, 0.95)
        self.split.setSingleStep(0.05)
        self.split.setDecimals(2)
        self.split.setValue(_default("split"))
        self.split.setToolTip("Fraction of the labelled images held out for validation (0: none)")
        self.device = _combo(DEVICES, _default("device"))
        self.num_workers = _spin(0, 64, _default("num_workers"))
        self.num_workers.setToolTip("Data-loading processes (0: load in the training thread)")
        self.augment = QCheckBox("Augment (flips, rotation, contrast, blur)")
        self.augment.setChecked(True)
        self.amp = QCheckBox("Mixed precision (CUDA; CPUs with bfloat16)")
        self.amp.setChecked(_default("amp"))
        self.amp.setToolTip(
            "float16 on CUDA GPUs, bfloat16 on CPUs with AVX512-BF16 or AMX (about 2x faster); "
            "float32 elsewhere. Saved models are float32 either way"
        )
        self.overwrite = QCheckBox("Replace a previous run in the save folder")
        self._fields: dict[str, QWidget] = {  # config key -> widget, read and set by widget type
            "architecture": self.architecture, "encoder": self.encoder, "epochs": self.epochs,
            "batch_size": self.batch_size, "split": self.split, "amp": self.amp, "device": self.device,
            "num_workers": self.num_workers, "overwrite": self.overwrite,
        }  # fmt: skip

        data = _group("Data", [
            ("Image folders", self.data_paths), ("Label folders", self.label_paths),
            ("Save folder", self.save_path), ("Start from", self.checkpoint),
        ])  # fmt: skip
        model = _group("Model", [
            ("Architecture", self.architecture), ("Encoder", self.encoder), ("Model options", self.model_kwargs),
        ])  # fmt: skip
        training = _group("Training", [
            ("Epochs", self.epochs), ("Batch size", self.batch_size), ("Learning rate", self.lr),
            ("Crop size", self.crop_size), ("Input scale", self.input_scale), ("Validation split", self.split),
            ("Device", self.device), ("Loader workers", self.num_workers), ("", self.augment), ("", self.amp),
            ("", self.overwrite),
        ])  # fmt: skip
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for g in (data, model, training):
            layout.addWidget(g)

    # -- form <-> config --------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """The config mapping: the loaded YAML's keys overlaid with the form's (not validated yet)."""
        data = dict(self._base)
        data["data_paths"] = self.data_paths.paths()
        data["label_paths"] = self.label_paths.paths() or None
        data["save_path"] = (self.save_path.paths() or [None])[0]
        data["checkpoint"] = (self.checkpoint.paths() or [None])[0]
        text = self.model_kwargs.text().strip()
        try:
            data["model_kwargs"] = yaml.safe_load(text) if text else {}
        except yaml.YAMLError:
            data["model_kwargs"] = text  # pydantic reports "should be a valid dictionary"
        data["lr"] = _number(self.lr.text())
        data["crop_size"] = _crop(self.crop_size.text())
        if self._scale_set:
            data["input_scale"] = round(self.input_scale.value(), 4)
        data.update({key: _get(widget) for key, widget in self._fields.items()})
        augment = self._base.get("augment")
        data["augment"] = {
            **(augment if isinstance(augment, dict) else {}),
            "enabled": self.augment.isChecked(),
        }
        if data["save_path"] is None:
            del data["save_path"]  # reported as "required key is missing"
        return data

    def _on_scale_changed(self, _value: float) -> None:
        self._scale_set = True

    def config(self) -> TrainingConfig:
        """The validated config; raises :class:`ConfigError` listing every problem (folders included)."""
        return parse_config(self.values(), source="training form")

    def set_config(self, cfg: TrainingConfig) -> None:
        """Show ``cfg`` in the form and keep its other keys for Start and Save."""
        self._base = cfg.to_jsonable()
        explicit = "input_scale" in cfg.model_fields_set  # to_jsonable leaves it out otherwise
        self.data_paths.set_paths(cfg.data_paths)
        self.label_paths.set_paths(cfg.label_paths)
        self.save_path.set_paths(cfg.save_path)
        self.checkpoint.set_paths(cfg.checkpoint)
        self.model_kwargs.setText(
            yaml.safe_dump(cfg.model_kwargs, default_flow_style=True).strip() if cfg.model_kwargs else ""
        )
        self.model_kwargs.setCursorPosition(0)
        self.lr.setText(_fmt_float(cfg.lr))
        crop = cfg.crop_size
        self.crop_size.setText(
            "" if crop is None else str(crop[0]) if crop[0] == crop[1] else f"{crop[0]}x{crop[1]}"
        )
        self.input_scale.setValue(cfg.input_scale)
        self._scale_set = explicit
        for key, widget in self._fields.items():
            _set(widget, getattr(cfg, key))
        self.augment.setChecked(cfg.augment.enabled)

    # -- YAML files -----------------------------------------------------------------------------------
    def load_yaml(self, path: str | Path) -> list[str]:
        """Fill the form from a training YAML (either layout); returns missing-folder problems.

        Any other problem raises :class:`ConfigError` and leaves the form as it was.
        """
        cfg, problems = load_config_allowing_missing_folders(path)
        self.set_config(cfg)
        return problems

    def save_yaml(self, path: str | Path) -> list[str]:
        """Write the form as a YAML ``napari-fibsem train --config`` reads; returns path problems."""
        return save_config(self.values(), path, source="training form")


def _group(title: str, rows: list[tuple[str, QWidget]]) -> QGroupBox:
    box = QGroupBox(title)
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    form.setContentsMargins(6, 6, 6, 6)
    form.setVerticalSpacing(4)
    for label, widget in rows:
        if label:
            form.addRow(label, widget)
        else:
            form.addRow(widget)
    return box


def _small_button(text: str, tooltip: str) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tooltip)
    button.setFixedWidth(button.fontMetrics().horizontalAdvance(text) + 14)
    return button


def _combo(items: tuple[str, ...], current: str) -> QComboBox:
    """Editable: the list holds common choices; any smp name can be typed."""
    box = QComboBox()
    box.setEditable(True)
    box.addItems(items)
    box.setCurrentText(current)
    return box


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


def _get(widget: QWidget) -> Any:
    """A simple field's config value: check box -> bool, combo -> its text, spin box -> its number."""
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentText().strip()
    if isinstance(widget, QDoubleSpinBox):
        return round(widget.value(), 4)  # no float noise from the spin box in the YAML
    return widget.value()


def _set(widget: QWidget, value: Any) -> None:
    """Show a config value in a simple field (the inverse of :func:`_get`)."""
    if isinstance(widget, QCheckBox):
        widget.setChecked(value)
    elif isinstance(widget, QComboBox):
        widget.setCurrentText(value)
    else:
        widget.setValue(value)


def _fmt_float(v: float) -> str:
    return f"{v:g}"


def _number(text: str) -> float | str:
    """A float when the text is one; otherwise the text, which pydantic then reports."""
    try:
        return float(text.strip())
    except ValueError:
        return text.strip()


def _crop(text: str) -> int | list[int] | str | None:
    if not text.strip() or text.strip().lower() in ("none", "null", "whole"):
        return None
    m = _CROP.match(text)
    if m is None:
        return text.strip()  # pydantic reports it
    return int(m[1]) if m[2] is None else [int(m[1]), int(m[2])]
