"""The training config: the YAML keys OpenFIBSEM users already write, plus ours, validated by pydantic.

Two layouts are read:

* the flat one OpenFIBSEM/AutoLamella document (``data_paths``, ``label_paths``, ``save_path``,
  ``checkpoint``, ``encoder``, ``num_classes``, ``epochs``, ``split``, ``batch_size``, ``lr``,
  ``train_log_freq``, ``val_log_freq``, ``wandb*``, ``model_type``, ``note``), extended with our keys;
* the older one with everything under ``train:`` (``data_dir`` with labels in ``data_dir/labels``,
  ``save_dir``, ``learning_rate``, ``cuda`` ...), mapped onto the flat one.

Unknown keys are errors (a typo silently ignored costs a night of training). Reading YAML files and
reporting every problem at once lives in :mod:`.config_file`. Relative paths are taken relative to
the working directory, as OpenFIBSEM's scripts do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LoggerName = Literal["console", "csv", "tensorboard", "wandb"]
Monitor = Literal["mean_fg_iou", "mean_fg_dice", "pixel_accuracy", "val_loss", "train_loss"]

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class AugmentConfig(_Strict):
    """EM-suited augmentation of the training split (``augment: false`` switches it all off)."""

    enabled: bool = True
    flip: bool = True
    """Random horizontal and vertical flips (each with probability 0.5)."""
    rotate90: bool = False
    """Random multiples of 90 degrees (off by default: FIB views have a preferred vertical axis)."""
    rotate: float = Field(10.0, ge=0, le=180)
    """Maximum angle in degrees of a random rotation (applied to half the samples); 0 = off."""
    scale: tuple[float, float] = (0.9, 1.1)
    """Random zoom range (applied with the rotation); (1, 1) = off."""
    autocontrast: float = Field(0.2, ge=0, le=1)
    """Probability of stretching the intensity range to the full dtype range."""
    equalize: float = Field(0.1, ge=0, le=1)
    """Probability of histogram equalisation."""
    blur: float = Field(0.2, ge=0, le=1)
    """Probability of a Gaussian blur (slight defocus)."""
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    brightness: float = Field(0.1, ge=0, le=1)
    """Maximum brightness shift as a fraction of the dtype range."""
    contrast: float = Field(0.1, ge=0, le=1)
    """Maximum relative contrast change."""
    noise: float = Field(0.0, ge=0, le=1)
    """Standard deviation of added Gaussian noise as a fraction of the dtype range; 0 = off."""
    foreground: float = Field(0.33, ge=0, le=1)
    """Share of training crops centred on a pixel of a foreground class present in the image, the
    class drawn uniformly (rare classes are seen as often as common ones); the rest are uniform."""
    foreground_weights: list[float] | None = None
    """Relative chance of each class id (one entry per output channel, the background's unused) to
    be drawn for a foreground crop among the classes an image holds; default: all equal. Raise a
    rare class's entry to centre more crops on it when it shares its images with common classes."""

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data

    @field_validator("foreground_weights")
    @classmethod
    def _fg_weights(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(w < 0 for w in v) or not any(w > 0 for w in v[1:])):
            raise ValueError("needs one number >= 0 per class, and some foreground class above 0")
        return v

    @field_validator("scale", "blur_sigma")
    @classmethod
    def _ordered_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"needs 0 < low <= high, got {list(v)}")
        return v


class LossConfig(_Strict):
    """Weights of the loss terms; ``loss: ce+dice`` is shorthand for ``{ce: 1, dice: 1, focal: 0}``."""

    ce: float = Field(1.0, ge=0)
    dice: float = Field(1.0, ge=0)
    focal: float = Field(0.0, ge=0)
    focal_gamma: float = Field(2.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        names = [p.strip().lower() for p in data.split("+") if p.strip()]
        bad = [n for n in names if n not in ("ce", "dice", "focal")]
        if bad or not names:
            raise ValueError(f"{data!r}: use ce, dice, focal joined by '+', e.g. 'ce+dice'")
        return {k: (1.0 if k in names else 0.0) for k in ("ce", "dice", "focal")}

    @model_validator(mode="after")
    def _some_weight(self) -> LossConfig:
        if self.ce + self.dice + self.focal <= 0:
            raise ValueError("at least one of ce, dice, focal needs a weight > 0")
        return self


class TrainingConfig(_Strict):
    """Everything a training run needs. Keys OpenFIBSEM users already write come first."""

    # -- OpenFIBSEM / AutoLamella keys ----------------------------------------------------------
    data_paths: list[Path] = Field(min_length=1)
    """Image folders (one or several)."""
    label_paths: list[Path] | None = None
    """One label folder per data path; default: each data folder's ``labels/``."""
    save_path: Path
    """Folder for ``best.pt``, ``last.pt`` (+ ``last.state.pt``), ``metrics.csv`` and ``config.yaml``."""
    checkpoint: Path | None = None
    """A bundle or OpenFIBSEM checkpoint to start from: resumed (see ``resume``) or fine-tuned."""
    encoder: str = "resnet34"
    num_classes: int | None = Field(None, ge=1, le=256)
    """Output channels; must agree with the class map (default: taken from it)."""
    epochs: int = Field(50, ge=1)
    split: float = Field(0.15, ge=0, lt=1)
    """Fraction of the labelled images held out for validation (0: none)."""
    batch_size: int = Field(4, ge=1)
    lr: float = Field(3e-4, gt=0)
    train_log_freq: int = Field(32, ge=1)
    """Log the training loss (and an image for tensorboard/wandb) every this many steps."""
    val_log_freq: int = Field(32, ge=1)
    """Log a validation image every this many validation batches."""
    wandb: bool = False
    wandb_project: str | None = None
    wandb_entity: str | None = None
    model_type: str | None = None
    """Descriptive only (stored in the bundle)."""
    note: str | None = None
    """Descriptive only (stored in the bundle)."""
    validate_dataset: bool = True
    """Check every label file against the class map before training."""
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"

    # -- ours -----------------------------------------------------------------------------------
    architecture: str = "Unet"
    """Any segmentation_models_pytorch architecture (Unet, UnetPlusPlus, FPN, DeepLabV3Plus ...)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra smp constructor arguments, e.g. ``{encoder_depth: 4, decoder_channels: [128, 64, 32, 16]}``."""
    class_map: Path | None = None
    """Class map YAML; default: the first data folder's ``classes.yaml``, else AutoLamella's classes."""
    normalization: dict[str, Any] | None = None
    """Input normalisation (``{mode: fixed}`` or ``{mode: percentile, low: 1, high: 99}``); stored in the bundle."""
    val_paths: list[Path] | None = None
    """Separate validation folders; when given, ``split`` is not used."""
    val_label_paths: list[Path] | None = None
    input_scale: float = Field(1.0, gt=0, le=1)
    """Train (and later predict) on images resized by this factor: 0.5 halves width and height, so a
    whole image costs a quarter and a crop of the same size sees twice the field of view (and
    prediction is about 4x faster). Images are area-averaged, labels
    resized by nearest neighbour; the factor is stored in the bundle and ``predict`` resizes the
    probabilities back, so masks come out at full size. Fine-tuning keeps the checkpoint's factor
    unless this key is given."""
    crop_size: tuple[int, int] | None = (512, 512)
    """Random training crops of this HEIGHT x WIDTH (an int for squares), so mixed sizes batch; null = whole
    images. Taken from the resized images (``input_scale``)."""
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    class_weights: list[float] | None = None
    """One weight per output channel for the CE/Dice/focal terms."""
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    step_size: int = Field(10, ge=1)
    """Epochs between learning-rate drops for ``scheduler: step``."""
    gamma: float = Field(0.1, gt=0, le=1)
    min_lr: float = Field(0.0, ge=0)
    seed: int = 0
    num_workers: int = Field(2, ge=0)
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    amp: bool = True
    """Mixed precision where the hardware runs it natively: float16 autocast + grad scaling on CUDA,
    bfloat16 autocast on CPUs with AVX512-BF16 or AMX (about 2x faster steps); float32 elsewhere.
    Validation and saved models stay float32."""
    logger: list[LoggerName] = Field(default_factory=lambda: ["console", "csv", "tensorboard"])
    """Where numbers go: console, ``metrics.csv``, TensorBoard (``save_path/tensorboard``), wandb."""
    wandb_mode: Literal["online", "offline"] | None = None
    monitor: Monitor = "mean_fg_iou"
    """Metric that decides ``best.pt`` (losses are minimised, the others maximised)."""
    val_every: int = Field(1, ge=1)
    """Validate (and write ``last.pt``) every this many epochs; always after the last one."""
    resume: Literal["auto"] | bool = "auto"
    """``auto``: resume when a training-state file lies beside ``checkpoint``, else fine-tune."""
    overwrite: bool = False
    """Allow replacing a previous run's bundles in ``save_path``."""
    deterministic: bool = False
    """``torch.use_deterministic_algorithms`` (slower on GPU; CPU runs are reproducible anyway)."""

    @field_validator("data_paths", "label_paths", "val_paths", "val_label_paths", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, Path)) else v

    @field_validator("data_paths", "label_paths", "val_paths", "val_label_paths")
    @classmethod
    def _abs_paths(cls, v: list[Path] | None) -> list[Path] | None:
        return None if v is None else [p.expanduser().absolute() for p in v]

    @field_validator("save_path", "checkpoint", "class_map")
    @classmethod
    def _abs_path(cls, v: Path | None) -> Path | None:
        return None if v is None else v.expanduser().absolute()

    @field_validator("crop_size", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        return (v, v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("crop_size")
    @classmethod
    def _crop_positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 16:
            raise ValueError(f"crops must be at least 16x16, got {v[0]}x{v[1]}")
        return v

    @field_validator("logger", mode="before")
    @classmethod
    def _logger_list(cls, v: Any) -> Any:
        if v is None or v == "none":
            return []
        return [v] if isinstance(v, str) else v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE.match(v):
            raise ValueError(f"{v!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        return v

    @field_validator("normalization")
    @classmethod
    def _normalization(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return None
        from napari_fibsem.core.models.normalization import Normalization

        try:
            return Normalization.from_dict(v).to_dict()
        except (TypeError, ValueError) as e:
            raise ValueError(str(e)) from None

    @field_validator("model_kwargs")
    @classmethod
    def _model_kwargs(cls, v: dict[str, Any]) -> dict[str, Any]:
        owned = sorted({"encoder_name", "classes", "in_channels", "encoder_weights"} & set(v))
        if owned:
            raise ValueError(f"{owned} are set by napari-fibsem (encoder, class map; no downloaded weights)")
        return v

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(w < 0 for w in v)):
            raise ValueError("class weights must be a non-empty list of numbers >= 0")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.label_paths is not None and len(self.label_paths) != len(self.data_paths):
            raise ValueError(
                f"label_paths has {len(self.label_paths)} entries but data_paths has {len(self.data_paths)}"
            )
        if self.val_label_paths is not None and len(self.val_label_paths) != len(self.val_paths or []):
            raise ValueError("val_label_paths needs one entry per val_paths entry")
        if self.wandb and "wandb" not in self.logger:
            self.logger = [*self.logger, "wandb"]
        return self

    # -- helpers ------------------------------------------------------------------------------
    def to_jsonable(self) -> dict[str, Any]:
        """The config as JSON-safe data, with ``input_scale`` only when it was given: absent, a
        fine-tuned checkpoint keeps its own scale, so a dumped config (the run folder's
        ``config.yaml``, the DDP processes' copy, the form's YAML) must not turn "unset" into 1.0."""
        data = self.model_dump(mode="json")
        if "input_scale" not in self.model_fields_set:
            del data["input_scale"]
        return data
