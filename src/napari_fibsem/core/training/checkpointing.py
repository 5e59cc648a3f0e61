"""Run folders, training-state files and RNG capture: what makes a resumed run continue exactly.

The weights live in the checkpoint bundle (``last.pt``) like any other model; everything else a
run needs to continue (optimiser, scheduler, grad scaler, epoch and batch position, RNG states,
best value so far, history) goes into ``last.state.pt`` beside it. Both are written atomically,
the state after the bundle, and the state names the step of the bundle it belongs to, so a crash
between the two writes is detected instead of resuming with mismatched halves. The state holds
only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_fibsem.core.io.atomic import atomic_path
from napari_fibsem.core.training.data import TrainingSetupError

STATE_KEY = "napari_fibsem_training_state"
STATE_VERSION = 1
BEST = "best.pt"
LAST = "last.pt"
METRICS_CSV = "metrics.csv"
CONFIG_YAML = "config.yaml"

RESUME_MAY_CHANGE = frozenset(
    {
        "epochs", "checkpoint", "resume", "overwrite", "save_path", "num_workers", "device", "logger",
        "wandb", "wandb_project", "wandb_entity", "wandb_mode", "note", "model_type",
        "train_log_freq", "val_log_freq", "validate_dataset", "val_every",
    }
)  # fmt: skip
"""Config keys a resumed run may change; any other change would not continue the same run."""

ADDED_KEYS: dict[str, Any] = {"input_scale": 1.0}
"""Keys a saved or given config may lack (added after the first release, or dumped only when set),
with the value their absence is compared as when resuming."""


def state_path_for(bundle: str | Path) -> Path:
    """``run/last.pt`` -> ``run/last.state.pt``."""
    bundle = Path(bundle)
    return bundle.with_name(f"{bundle.stem}.state.pt")


# -- RNG ------------------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, random) as weights_only-safe values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj: Any) -> Any:
    return [_to_lists(o) for o in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(o) for o in obj) if isinstance(obj, list) else obj


# -- state files -----------------------------------------------------------------------------------
def save_training_state(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write a training-state dict atomically (after the bundle it belongs to)."""
    path = Path(path)
    payload = {STATE_KEY: STATE_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a training-state file with ``weights_only=True``; problems raise naming the file."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingSetupError(f"{path}: cannot read the training state ({first})") from None
    if not isinstance(payload, dict) or payload.get(STATE_KEY) is None:
        raise TrainingSetupError(f"{path}: not a napari-fibsem training-state file")
    if payload[STATE_KEY] > STATE_VERSION:
        raise TrainingSetupError(
            f"{path}: training state format {payload[STATE_KEY]} is newer than this napari-fibsem"
        )
    missing = [k for k in ("epoch", "batch", "global_step", "optimizer", "rng", "config") if k not in payload]
    if missing:
        raise TrainingSetupError(f"{path}: training state lacks {missing}")
    return payload


def collect_state(trainer: Any) -> dict[str, Any]:
    """Everything beyond the weights that a :class:`~.loop.Trainer` needs to continue exactly."""
    return {
        "epoch": trainer.epoch,
        "batch": trainer.batch,
        "global_step": trainer.global_step,
        "loss_sum": trainer.loss_sum,
        "loss_count": trainer.loss_count,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict() if trainer.amp else None,
        "rng": capture_rng(),
        "best_value": trainer.best_value,
        "best_epoch": trainer.best_epoch,
        "last_metrics": trainer.last_metrics,
        "history": trainer.history,
        "config": json.dumps(trainer.config.to_jsonable(), sort_keys=True),
        "world_size": trainer.ctx.world_size,
    }


def apply_state(trainer: Any, state: Mapping[str, Any]) -> None:
    """Put a trainer (optimiser, scheduler, scaler built) back where :func:`collect_state` left it."""
    trainer.epoch, trainer.batch = int(state["epoch"]), int(state["batch"])
    trainer.global_step = int(state["global_step"])
    trainer.loss_sum, trainer.loss_count = float(state.get("loss_sum", 0.0)), int(state.get("loss_count", 0))
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scheduler is not None and state.get("scheduler") is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
        if isinstance(trainer.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            trainer.scheduler.T_max = max(1, trainer.total_steps)  # ``epochs`` may have been raised
    if trainer.amp and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.best_value, trainer.best_epoch = state.get("best_value"), state.get("best_epoch")
    trainer.last_metrics = dict(state.get("last_metrics") or {})
    trainer.history = [dict(r) for r in state.get("history", [])]
    restore_rng(state["rng"])


def resume_conflicts(saved_config_json: str, config: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ from the run being resumed (outside :data:`RESUME_MAY_CHANGE`).

    A key of :data:`ADDED_KEYS` that either config lacks counts as that key's default.
    """
    saved = {**ADDED_KEYS, **json.loads(saved_config_json)}
    config = {**ADDED_KEYS, **config}
    keys = sorted((set(saved) | set(config)) - RESUME_MAY_CHANGE)
    return [f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in keys if saved.get(k) != config.get(k)]


def check_save_path(save_path: Path, overwrite: bool, resuming_from: Path | None) -> None:
    """Refuse to replace another run's bundles unless asked: nothing a user made is lost silently."""
    if save_path.exists() and not save_path.is_dir():
        raise TrainingSetupError(f"save_path {save_path} is a file, not a folder")
    existing = [save_path / n for n in (BEST, LAST) if (save_path / n).exists()]
    if not existing or overwrite:
        return
    if resuming_from is not None and resuming_from.resolve().parent == save_path.resolve():
        return
    raise TrainingSetupError(
        f"save_path {save_path} already holds a run ({', '.join(p.name for p in existing)}); "
        f"resume it with checkpoint: {save_path / LAST}, choose another save_path, or set overwrite: true"
    )
