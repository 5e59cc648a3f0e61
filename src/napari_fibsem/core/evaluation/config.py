"""What an evaluation run reads and returns: its config (YAML), its result and the table columns.

Separate from ``run`` so the plots and the report can read these types without importing the
runner that calls them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from napari_fibsem.core.detection import CATALOGUE
from napari_fibsem.core.errors import ConfigError
from napari_fibsem.core.training.config_file import describe_errors, read_yaml

_WHAT = "evaluation config"
EVAL_COLUMNS = (
    "checkpoint", "filename", "feature", "found", "reason", "gt_x", "gt_y", "det_x", "det_y",
    "dx_px", "dy_px", "distance_px", "pixel_size", "distance_m", "corrected",
)  # fmt: skip


class CheckpointSpec(BaseModel):
    """A model file/folder (``path``) or a folder of predicted label TIFFs (``masks``), with a name.

    A ``path`` that is a plain folder of TIFFs (not an nnU-Net results folder) is read as masks.
    """

    model_config = ConfigDict(extra="forbid")
    path: Path | None = None
    masks: Path | None = None
    name: str | None = None
    encoder: str | None = None  # OpenFIBSEM eval configs carry these; the format is read from the file
    nc: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, (str, Path)):
            return {"path": data}
        if isinstance(data, Mapping) and "checkpoint" in data:  # OpenFIBSEM: {checkpoint: ..., encoder: ...}
            data = {**{k: v for k, v in data.items() if k != "checkpoint"}, "path": data["checkpoint"]}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> CheckpointSpec:
        if (self.path is None) == (self.masks is None):
            raise ValueError("give either a model 'path' or a 'masks' folder of predictions")
        source = self.path or self.masks
        if self.name is None:
            self.name = source.stem if source.suffix else source.name  # type: ignore[union-attr]
        return self


class EvaluationStopped(Exception):
    """``should_stop`` said stop: the run ends before anything is written (no partial tables)."""


class EvalConfig(BaseModel):
    """The keys of OpenFIBSEM's evaluation config plus ours (``features``, ``min_size``, ``device``)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    data_path: Path
    """Keypoints CSV with the labelled (true) points."""
    images_path: Path
    save_path: Path
    checkpoints: list[CheckpointSpec] = Field(min_length=1)
    thresholds: list[float] = Field(default_factory=lambda: [250.0, 100.0, 50.0, 25.0, 10.0])
    run_eval: bool = True
    """False: re-plot an existing ``eval.csv`` in ``save_path`` without running the models."""
    plot_eval: bool = True
    show_det_plot: bool = False
    save_det_plot: bool = False
    show_eval_plot: bool = False
    save_eval_plot: bool = True
    features: list[str] | None = None
    """Evaluate only these features (default: every feature in the CSV)."""
    min_size: int | None = Field(default=None, ge=0)
    filter: bool = True
    device: str | None = None

    @field_validator("thresholds")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if not v or any(not (t > 0 and math.isfinite(t)) for t in v):
            raise ValueError("thresholds must be a non-empty list of positive pixel distances")
        return sorted(set(v), reverse=True)

    @field_validator("features")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        unknown = [f for f in v or [] if f not in CATALOGUE]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; known: {sorted(CATALOGUE)}")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> EvalConfig:
        names = [c.name for c in self.checkpoints]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"checkpoints share the name(s) {dupes}; give each a distinct 'name'")
        return self


def load_eval_config(path: str | Path) -> EvalConfig:
    """Read an evaluation YAML; relative paths are relative to the file; all problems in one error."""
    path = Path(path)
    return parse_eval_config(read_yaml(path, _WHAT), source=path, base=path.parent)


def parse_eval_config(data: Any, source: str | Path = "<config>", base: Path | None = None) -> EvalConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(source, [f"expected a mapping of keys to values, got {type(data).__name__}"], _WHAT)
    try:
        cfg = EvalConfig.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(source, describe_errors(e.errors(), {}, EvalConfig), _WHAT) from None
    if base is not None:
        cfg = _resolve(cfg, base)
    problems = []
    if cfg.run_eval:
        problems += [] if cfg.data_path.is_file() else [f"data_path: {cfg.data_path} is not a file"]
        problems += [] if cfg.images_path.is_dir() else [f"images_path: {cfg.images_path} is not a folder"]
        for i, c in enumerate(cfg.checkpoints):
            src = c.path or c.masks
            if not src.exists():  # type: ignore[union-attr]
                problems.append(f"checkpoints[{i}]: {src} does not exist")
    if problems:
        raise ConfigError(source, problems, _WHAT)
    return cfg


def _resolve(cfg: EvalConfig, base: Path) -> EvalConfig:
    def r(p: Path | None) -> Path | None:
        return None if p is None else (p.expanduser() if p.expanduser().is_absolute() else base / p)

    checkpoints = [c.model_copy(update={"path": r(c.path), "masks": r(c.masks)}) for c in cfg.checkpoints]
    return cfg.model_copy(
        update={
            "data_path": r(cfg.data_path),
            "images_path": r(cfg.images_path),
            "save_path": r(cfg.save_path),
            "checkpoints": checkpoints,
        }
    )


@dataclass
class EvalResult:
    """Rows of ``eval.csv`` and ``accuracy.csv`` and every file written."""

    rows: list[dict[str, Any]]
    accuracy: list[dict[str, Any]]
    thresholds: list[float]
    files: dict[str, Path] = field(default_factory=dict)
    det_plots: list[Path] = field(default_factory=list)


def threshold_column(t: float) -> str:
    """The accuracy table's column for pixel threshold ``t``."""
    return f"acc_{t:g}px"
