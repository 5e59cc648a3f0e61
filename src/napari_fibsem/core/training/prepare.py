"""The model a run starts from: new, fine-tuned from a checkpoint, or resumed exactly.

Every mismatch between the config, the data's class map and the checkpoint is an error that names
the checkpoint file, raised before any training starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from napari_fibsem.core.device import resolve_device
from napari_fibsem.core.errors import DeviceError
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.models.base import ModelLoadError
from napari_fibsem.core.models.normalization import Normalization
from napari_fibsem.core.training.checkpointing import load_training_state, resume_conflicts, state_path_for
from napari_fibsem.core.training.config import TrainingConfig
from napari_fibsem.core.training.data import TrainingSetupError
from napari_fibsem.core.training.ddp import DistContext

StartMode = Literal["new", "fine-tune", "resume"]


@dataclass
class PreparedModel:
    model: Any  # SmpModel
    mode: StartMode
    state: dict[str, Any] | None = None
    """The training state to restore when resuming."""

    def describe(self, config: TrainingConfig) -> str:
        m = self.model
        what = f"{m.architecture}/{m.encoder}, {m.num_classes} output channels, normalisation {m.normalization.mode}"
        if self.mode == "new":
            return f"new {what}"
        if self.mode == "fine-tune":
            return f"fine-tuning {what} from {config.checkpoint}"
        st = self.state or {}
        return f"resuming {what} from {config.checkpoint} (epoch {st.get('epoch', 0) + 1}, step {st.get('global_step')})"


def run_device(config: TrainingConfig, ctx: DistContext) -> torch.device:
    """The run's device (:func:`~napari_fibsem.core.device.resolve_device`; each DDP process its
    own GPU); a device this machine lacks is a set-up error of the run."""
    try:
        return resolve_device(config.device, ctx.local_rank if ctx.enabled else None)
    except DeviceError as e:
        raise TrainingSetupError(str(e)) from None


def cpu_has_native_bfloat16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 convolutions run about twice as fast as float32 there; on
    other CPUs they are emulated and slower, so mixed precision stays off."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type ``amp: true`` trains in on ``device``, or None for plain float32."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


def prepare_model(
    config: TrainingConfig,
    class_map: ClassMap,
    class_map_source: str,
    device: torch.device,
    ctx: DistContext,
) -> PreparedModel:
    """Build or load the model and (when resuming) its training state, checking they fit the data."""
    from napari_fibsem.core.models.smp_backend import create_model

    if config.checkpoint is None:
        normalization = (
            Normalization.from_dict(config.normalization) if config.normalization else Normalization()
        )
        torch.manual_seed(config.seed)  # identical initial weights for a seed (and on every rank)
        try:
            model = create_model(
                config.architecture,
                config.encoder,
                class_map,
                normalization,
                input_scale=config.input_scale,
                device=device,
                **config.model_kwargs,
            )
        except ValueError as e:
            raise TrainingSetupError(
                f"cannot build architecture {config.architecture!r} with encoder {config.encoder!r}: {e}"
            ) from None
        return PreparedModel(model, "new")

    ckpt = config.checkpoint
    state_file = state_path_for(ckpt)
    resume = config.resume is True or (config.resume == "auto" and state_file.is_file())
    if config.resume is True and not state_file.is_file():
        raise TrainingSetupError(
            f"checkpoint: resume: true needs the training state {state_file} beside {ckpt}; "
            "it is written with last.pt. Set resume: false to fine-tune from the weights only"
        )
    model = _load(ckpt, device)
    _check_against_config(model, config, ckpt)
    if model.num_classes != class_map.num_classes:
        raise TrainingSetupError(
            f"{ckpt}: the checkpoint predicts {model.num_classes} classes {model.class_map.names} but the "
            f"data's class map {class_map_source} needs {class_map.num_classes} {class_map.names}"
        )
    if model.class_map != class_map:
        model.class_map = class_map  # same channels, the data's names/colours win
    if (
        config.normalization is not None
        and Normalization.from_dict(config.normalization) != model.normalization
    ):
        raise TrainingSetupError(
            f"{ckpt}: the checkpoint was trained with normalisation {model.normalization.to_dict()} but the config "
            f"asks for {config.normalization}; remove 'normalization' to keep the checkpoint's"
        )
    if "input_scale" in config.model_fields_set:
        model.input_scale = config.input_scale  # else the checkpoint's own scale
    if not resume:
        return PreparedModel(model, "fine-tune")
    state = load_training_state(state_file)
    bundle_step = model.metadata.metrics.get("global_step")
    if bundle_step != state["global_step"]:
        raise TrainingSetupError(
            f"{state_file}: this training state is from step {state['global_step']} but {ckpt} holds the "
            f"weights of step {bundle_step}; they do not belong together (set resume: false to fine-tune)"
        )
    conflicts = resume_conflicts(state["config"], config.to_jsonable())
    if conflicts:
        raise TrainingSetupError(
            f"{ckpt}: resuming needs the same settings as the interrupted run, but these changed: "
            + "; ".join(conflicts)
            + ". Set resume: false to fine-tune with new settings instead"
        )
    if state["epoch"] >= config.epochs:
        raise TrainingSetupError(
            f"{ckpt}: this run has already done {state['epoch']} of epochs: {config.epochs}; raise epochs "
            "to train on, or set resume: false to fine-tune from these weights"
        )
    if state.get("batch", 0) and state.get("world_size", 1) != ctx.world_size:
        raise TrainingSetupError(
            f"{state_file}: the run stopped mid-epoch with {state.get('world_size', 1)} process(es); "
            f"resume it with the same number (not {ctx.world_size})"
        )
    return PreparedModel(model, "resume", state)


def _load(path: Path, device: torch.device) -> Any:
    from napari_fibsem.core.models.loader import load_model

    try:
        model = load_model(path, device=device)
    except ModelLoadError as e:
        raise TrainingSetupError(f"checkpoint: {e}") from None
    if getattr(model, "torch_module", None) is None or not hasattr(model, "save"):
        raise TrainingSetupError(
            f"{path}: a {getattr(model, 'backend', '?')} model cannot be trained; give a napari-fibsem bundle "
            "or an OpenFIBSEM checkpoint"
        )
    return model


def _check_against_config(model: Any, config: TrainingConfig, ckpt: Path) -> None:
    """Keys the user wrote explicitly must agree with the checkpoint (defaults are not checked)."""
    meta = model.metadata
    given = config.model_fields_set
    problems = []
    if "encoder" in given and config.encoder != meta.encoder:
        problems.append(f"encoder: config {config.encoder!r}, checkpoint {meta.encoder!r}")
    if "architecture" in given and config.architecture.lower() != meta.architecture.lower():
        problems.append(f"architecture: config {config.architecture!r}, checkpoint {meta.architecture!r}")
    if "model_kwargs" in given and _canon(config.model_kwargs) != _canon(meta.model_kwargs):
        problems.append(f"model_kwargs: config {config.model_kwargs}, checkpoint {meta.model_kwargs}")
    if problems:
        raise TrainingSetupError(
            f"{ckpt}: the checkpoint does not match the config ({'; '.join(problems)}); "
            "remove those keys to train the checkpoint's network, or point checkpoint at a matching file"
        )


def _canon(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=list)
