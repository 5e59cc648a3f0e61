"""Settings of an event-model training run, read from a YAML with the familiar deep-events keys.

``load_settings(path)`` validates every key at once and raises one
:class:`~napari_fibsem.core.training.config.ConfigError` naming the file and each bad key (the
same formatter as the segmentation and evaluation configs); relative paths are relative to the
settings file. See ``examples/event_settings.yaml`` for every key with a comment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from napari_fibsem.core.errors import ConfigError
from napari_fibsem.core.events.training_sets import SET_FILE
from napari_fibsem.core.training.config_file import describe_errors, read_yaml

_WHAT = "event settings"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
ELASTIC_DEFAULT_PX = 2.0
"""Displacement amplitude (pixels) that ``elastic: true`` stands for."""

EventLoss = Literal["soft_focal", "bce", "dice", "bce_dice"]
EventLogger = Literal["console", "csv", "tensorboard"]


def _odd(name: str, v: int) -> int:
    if v % 2 != 1:
        raise ValueError(f"{name} must be odd (a window centred on the target frame), got {v}")
    return v


def _range(name: str, v: tuple[float, float]) -> tuple[float, float]:
    lo, hi = v
    if not 0 < lo <= hi:
        raise ValueError(f"{name} must be [low, high] with 0 < low <= high, got [{lo}, {hi}]")
    return v


class EventSettings(BaseModel):
    """One training run of the event heatmap U-Net."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    # -- data ---------------------------------------------------------------------------------------
    training_set: Path
    """A training-set folder (``set.yaml``, written by ``napari-fibsem events set``)."""
    output: Path | None = None
    """Run folder: ``best.pt``, ``performance.yaml``, ``metrics.csv``, ``tensorboard/``."""
    n_frames: int = Field(3, ge=1, le=31)
    """Input frames: a window centred on the target frame (odd; clamped at the movie ends)."""
    subset_fraction: float = Field(1.0, gt=0, le=1)
    """Share of the training samples used (seeded), for quick runs and learning curves."""
    seed: int = 0
    # -- model --------------------------------------------------------------------------------------
    nb_filters: int = Field(16, ge=1, le=512)
    """Filters of the top U-Net level (doubled at each level down)."""
    first_conv_size: int = Field(3, ge=1, le=15)
    """Kernel size of the first convolution (odd)."""
    depth: int = Field(3, ge=1, le=6)
    """Number of down-sampling levels."""
    # -- optimisation -------------------------------------------------------------------------------
    batch_size: int = Field(16, ge=1)
    epochs: int = Field(20, ge=1)
    initial_learning_rate: float = Field(1e-3, gt=0, le=1)
    """Adam's learning rate at the start (cosine decay to a tenth over the run)."""
    loss: EventLoss = "soft_focal"
    alpha: float = Field(0.75, ge=0, le=1)
    """Focal loss: weight of the event (positive) term; the background gets 1 - alpha."""
    gamma: float = Field(2.0, ge=0, le=10)
    """Focal loss: focusing exponent (0 = alpha-weighted BCE)."""
    # -- augmentation -------------------------------------------------------------------------------
    n_augmentations: int = Field(1, ge=0, le=100)
    """Augmented copies of each training sample per epoch (0 = each sample once, not augmented)."""
    brightness_range: tuple[float, float] = (0.8, 1.2)
    """Random intensity factor range."""
    gamma_range: tuple[float, float] = (0.8, 1.2)
    """Random gamma (intensity exponent) range; [1, 1] = off."""
    poisson: float = Field(0.0, ge=0, le=1)
    """Shot-noise strength: 1 / photons at normalised intensity 1 (0 = off)."""
    elastic: bool | float = False
    """Elastic deformation: false, true (2 px) or a displacement amplitude in pixels."""
    # -- evaluation ---------------------------------------------------------------------------------
    beta: float = Field(1.0, gt=0)
    """The threshold is chosen on the val split to maximise F-beta (beta > 1 favours recall)."""
    match_distance: float = Field(5.0, gt=0)
    """A detection matches an annotated event within this many pixels ..."""
    match_frames: int = Field(1, ge=0)
    """... and this many frames."""
    hysteresis: float = Field(0.5, gt=0, le=1)
    """Events grow from seeds >= threshold into pixels >= threshold * hysteresis."""
    whole_movie_test: bool = True
    """Also score the chosen threshold on the whole test movies (every frame, all annotated events),
    found from the test crops' ``event.yaml``; movies no longer there are skipped with a note."""
    test_movies: list[Path] = Field(default_factory=list)
    """Movies to score whole instead (each with its point CSV beside it, as ``events extract`` finds it)."""
    # -- run ----------------------------------------------------------------------------------------
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    logger: list[EventLogger] = Field(default_factory=lambda: ["csv", "tensorboard"])
    """Where per-epoch numbers go (the CLI adds console lines itself)."""
    overwrite: bool = False
    """Allow replacing ``best.pt`` / ``performance.yaml`` of a previous run in ``output``."""

    @field_validator("n_frames")
    @classmethod
    def _n_frames_odd(cls, v: int) -> int:
        return _odd("n_frames", v)

    @field_validator("first_conv_size")
    @classmethod
    def _first_conv_odd(cls, v: int) -> int:
        return _odd("first_conv_size", v)

    @field_validator("brightness_range")
    @classmethod
    def _brightness(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _range("brightness_range", v)

    @field_validator("gamma_range")
    @classmethod
    def _gamma_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _range("gamma_range", v)

    @field_validator("elastic")
    @classmethod
    def _elastic(cls, v: bool | float) -> bool | float:
        if not isinstance(v, bool) and not 0 <= v <= 50:
            raise ValueError(f"elastic must be true/false or an amplitude in pixels (0..50), got {v}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"{v!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        return v

    @field_validator("logger", mode="before")
    @classmethod
    def _logger_list(cls, v: Any) -> Any:
        if v is None or v == "none":
            return []
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _paths(self) -> EventSettings:
        self.training_set = self.training_set.expanduser()
        if self.output is not None:
            self.output = self.output.expanduser()
        self.test_movies = [p.expanduser() for p in self.test_movies]
        return self

    @property
    def elastic_px(self) -> float:
        """The elastic displacement amplitude in pixels (0 = off)."""
        if isinstance(self.elastic, bool):
            return ELASTIC_DEFAULT_PX if self.elastic else 0.0
        return float(self.elastic)

    def to_jsonable(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def load_settings(path: str | Path) -> EventSettings:
    """Read a settings YAML; relative paths are relative to the file; all problems in one error."""
    path = Path(path)
    return parse_settings(read_yaml(path, _WHAT), source=path, base=path.parent)


def parse_settings(data: Any, source: str | Path = "<settings>", base: Path | None = None) -> EventSettings:
    """Validate a loaded mapping (e.g. from a widget form); ``base`` resolves relative paths."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, [f"expected a mapping of keys to values, got {type(data).__name__}"], _WHAT)
    try:
        settings = EventSettings.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(source, describe_errors(e.errors(), {}, EventSettings), _WHAT) from None
    if base is not None:
        settings = settings.model_copy(
            update={
                "training_set": _resolve(settings.training_set, base),
                "output": None if settings.output is None else _resolve(settings.output, base),
                "test_movies": [_resolve(p, base) for p in settings.test_movies],
            }
        )
    if not (settings.training_set / SET_FILE).is_file():
        what = "does not exist" if not settings.training_set.exists() else f"holds no {SET_FILE}"
        raise ConfigError(
            source,
            [f"training_set: {settings.training_set} {what} (make one with `napari-fibsem events set`)"],
            _WHAT,
        )
    return settings


def _resolve(p: Path, base: Path) -> Path:
    return p if p.is_absolute() else base / p
