"""SAM / MobileSAM variants: a small registry, checkpoint loading without pickle, type detection.

The user picks a checkpoint file; nothing is ever downloaded. ``segment-anything`` and
``mobile_sam`` (extra ``sam``) are imported only here, inside functions, so the rest of core
loads without them.
"""

from __future__ import annotations

import hashlib
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from napari_fibsem.core.errors import FibsemError

SamModelType = Literal["vit_t", "vit_b", "vit_l", "vit_h"]

# model type -> (package providing it, what it is); resolved with importlib on use.
SAM_VARIANTS: dict[str, tuple[str, str]] = {
    "vit_t": ("mobile_sam", "MobileSAM (TinyViT encoder, ~10M parameters)"),
    "vit_b": ("segment_anything", "SAM ViT-B (~90M parameters)"),
    "vit_l": ("segment_anything", "SAM ViT-L (~310M parameters)"),
    "vit_h": ("segment_anything", "SAM ViT-H (~640M parameters)"),
}

# ViT embedding width of the image encoder -> model type (SAM's published sizes)
_VIT_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


class SamCheckpointError(FibsemError, ValueError):
    """A checkpoint file that cannot be used: unreadable, not a state dict, or the wrong model."""


@dataclass(eq=False)
class SamModel:
    """A loaded SAM model plus what identifies it in cache keys.

    ``weights_sha1`` hashes the weights themselves (not the file name), so a renamed or re-saved
    checkpoint keeps its cached embeddings while different weights (also two random inits) never
    share them.
    """

    model: Any  # segment_anything / mobile_sam ``Sam`` module, in eval mode
    model_type: str
    checkpoint: Path | None
    weights_sha1: str
    device: Any = field(default=None)

    @property
    def identity(self) -> str:
        """Short model identity used in embedding cache keys."""
        return f"{self.model_type}:{self.weights_sha1[:16]}"


def _package(model_type: str):
    from napari_fibsem.core._optional import require

    if model_type not in SAM_VARIANTS:
        raise ValueError(f"unknown SAM model type {model_type!r}; choose one of {sorted(SAM_VARIANTS)}")
    name = SAM_VARIANTS[model_type][0]
    with warnings.catch_warnings():  # mobile_sam imports deprecated timm paths and re-registers models
        warnings.simplefilter("ignore")
        return require(name, "sam")


def build_sam(model_type: str, random_init: bool = True):
    """A ``Sam`` of ``model_type`` from its package's registry.

    ``random_init=False`` skips drawing random weights, for a model whose every parameter a
    checkpoint is about to overwrite (what :func:`load_sam` does): the draws are most of the build
    (1.0 of 1.5 s for MobileSAM on 2 cores, truncated normals in timm), and they would be thrown away.
    """
    pkg = _package(model_type)
    with warnings.catch_warnings(), (nullcontext() if random_init else _no_random_init()):
        warnings.simplefilter("ignore")
        return pkg.sam_model_registry[model_type](checkpoint=None)


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                   "xavier_uniform_", "xavier_normal_", "orthogonal_")  # fmt: skip


@contextmanager
def _no_random_init():
    """torch's and timm's weight initialisers leave tensors as allocated, inside the block."""
    import sys

    import torch.nn.init as init

    def keep(tensor, *args, **kwargs):
        return tensor

    targets = [(init, name) for name in _INIT_FUNCTIONS if hasattr(init, name)]
    timm_init = sys.modules.get("timm.layers.weight_init")
    if timm_init is not None and hasattr(timm_init, "_trunc_normal_"):
        targets.append((timm_init, "_trunc_normal_"))  # what timm's trunc_normal_ calls
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    for owner, name, _ in saved:
        setattr(owner, name, keep)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def reference_predictor(model: SamModel):
    """The package's own ``SamPredictor`` for ``model`` (used to check and benchmark ours)."""
    return _package(model.model_type).SamPredictor(model.model)


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    """Accept a bare state dict, or one nested under ``model``/``state_dict``/``model_state``."""
    import torch

    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("model", "state_dict", "model_state"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SamCheckpointError(f"{path}: not a SAM state dict (found {type(obj).__name__} without tensors)")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel/DDP
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's tensors with ``weights_only=True`` (never runs pickled code)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle with code, truncated zip, not a torch file at all
        raise SamCheckpointError(f"{path}: cannot be read as a torch weights file ({type(e).__name__}: {e})") from e
    return _unwrap_state_dict(obj, path)


def detect_model_type(state_dict: dict[str, Any]) -> str | None:
    """Recognise the variant from the weights: TinyViT's layer names, else the ViT width."""
    if any(k.startswith(("image_encoder.layers.", "image_encoder.patch_embed.seq.")) for k in state_dict):
        return "vit_t"
    proj = state_dict.get("image_encoder.patch_embed.proj.weight")
    if proj is not None and getattr(proj, "ndim", 0) == 4:
        return _VIT_WIDTHS.get(int(proj.shape[0]))
    return None


def _check_keys(model, state_dict: dict[str, Any], path: Path, model_type: str, detected: str | None) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state_dict) if tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    if not (missing or unexpected or wrong_shape):
        return
    parts = [f"{len(missing)} missing", f"{len(unexpected)} unexpected", f"{len(wrong_shape)} with another shape"]
    examples = (missing[:2] + unexpected[:2] + wrong_shape[:2])[:4]
    hint = f"; the weights look like {detected!r}" if detected and detected != model_type else ""
    raise SamCheckpointError(
        f"{path}: does not match SAM model type {model_type!r} ({', '.join(parts)} keys, e.g. {examples}){hint}"
    )


def weights_sha1(module) -> str:
    """sha1 over the state dict (names, dtypes, shapes, bytes) in a fixed order."""
    import torch

    h = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def load_sam(
    checkpoint: str | Path | None,
    model_type: SamModelType | None = None,
    device: str | None = None,
    *,
    random_weights: bool = False,
) -> SamModel:
    """Load SAM (vit_b/l/h) or MobileSAM (vit_t) from a checkpoint the user picked.

    ``model_type=None`` recognises the variant from the weights. ``checkpoint=None`` builds
    random weights, allowed only with ``random_weights=True`` (tests and benchmarks) so that a
    forgotten path never silently yields a useless model.
    """
    import torch

    if checkpoint is None:
        if not random_weights:
            raise ValueError("load_sam needs a checkpoint file; pass random_weights=True for random weights")
        if model_type is None:
            raise ValueError(f"random weights need an explicit model_type, one of {sorted(SAM_VARIANTS)}")
        model = build_sam(model_type)
        path = None
    else:
        path = Path(checkpoint)
        state_dict = read_state_dict(path)
        detected = detect_model_type(state_dict)
        if model_type is None:
            if detected is None:
                raise SamCheckpointError(
                    f"{path}: cannot tell the SAM model type from the weights; pass model_type, one of "
                    f"{sorted(SAM_VARIANTS)}"
                )
            model_type = detected
        model = build_sam(model_type, random_init=False)  # every weight comes from the file
        _check_keys(model, state_dict, path, model_type, detected)
        model.load_state_dict(state_dict)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return SamModel(model=model, model_type=model_type, checkpoint=path, weights_sha1=weights_sha1(model),
                    device=torch.device(device))
