"""The one device resolver: what ``device: auto`` means, and a clear error for a missing GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_fibsem.core.errors import DeviceError

if TYPE_CHECKING:
    import torch


def resolve_device(device: Any = None, local_rank: int | None = None) -> torch.device:
    """``None`` or ``"auto"`` -> CUDA when available, else CPU; anything else as asked.

    Asking for CUDA or MPS where torch cannot see it raises :class:`DeviceError` naming the
    setting. With ``local_rank`` (a DDP process), CUDA means that process's own GPU.
    """
    import torch

    want = "auto" if device is None else str(device)
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device: {device!r} was asked for but torch sees no CUDA GPU; use device: auto or cpu")
    if want == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device: 'mps' was asked for but is not available here")
    if want.startswith("cuda") and local_rank is not None:  # one GPU per process
        want = f"cuda:{local_rank}"
    return torch.device(want)
