"""Data-parallel training with ``torch.distributed``: NCCL on GPUs, gloo on CPU.

Two ways in, one trainer: ``torchrun --nproc-per-node N -m napari_fibsem.cli train --config c.yaml``
(the process group comes from torchrun's environment variables), or
:func:`~napari_fibsem.core.training.launch.train_distributed` / ``napari-fibsem train --nprocs N``,
which spawns N local processes itself. Every process trains on its shard of each epoch; only rank 0 writes bundles and logs.
:func:`run_distributed` spawns any such per-process function (the event trainer uses it too, see
``core/events/distributed.py``); the helpers below keep the processes' numbers and weights in step.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from napari_fibsem.core.training.data import TrainingSetupError
from napari_fibsem.core.training.progress import TrainingError


@dataclass(frozen=True)
class DistContext:
    """This process's place in a run (``world_size == 1``: plain single-process training)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def env_context() -> DistContext:
    """The context torchrun (or any launcher setting RANK/WORLD_SIZE) describes; single otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    rank = int(os.environ.get("RANK", "0"))
    return DistContext(rank=rank, world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", rank)))


def default_backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_group(ctx: DistContext, device: torch.device, init_method: str = "env://") -> None:
    """Join the process group unless already joined (torchrun leaves that to the program)."""
    if ctx.enabled and device.type == "cuda":
        torch.cuda.set_device(device)
    if ctx.enabled and not dist.is_initialized():
        dist.init_process_group(
            default_backend(device), init_method=init_method, rank=ctx.rank, world_size=ctx.world_size
        )


def has_unused_parameters(net: torch.nn.Module, in_channels: int, size: int, device: torch.device) -> bool:
    """Whether a forward/backward leaves trainable parameters without gradients (e.g. smp ResNet
    encoders built with ``encoder_depth < 5`` keep their deeper layers). DDP must be told, or it
    waits for those gradients forever. Probed once in eval mode, so BatchNorm statistics stay put."""
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            net(torch.zeros(1, in_channels, size, size, device=device)).float().sum().backward()
        return any(p.requires_grad and p.grad is None for p in net.parameters())
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was_training)


def all_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``t`` over all processes in place (no-op when single)."""
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_true(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """True on every process when it is True on any (cancellation and setup failures stay in step)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def cleanup(barrier: bool = True) -> None:
    """Leave the process group. After a successful run all processes wait for each other first (one
    tearing its connections down while another still talks to it makes gloo abort the other); after
    a failure they leave at once, since the others may never reach the barrier."""
    if dist.is_initialized():
        try:
            if barrier:
                dist.barrier()
        finally:
            dist.destroy_process_group()


# -- keeping replicas in step ---------------------------------------------------------------------
def broadcast_buffers(module: torch.nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every process.

    DDP broadcasts them at the start of each training forward, so after the last step every process
    holds the statistics of its own last batch; call this before validating or saving weights."""
    if ctx.enabled:
        for b in module.buffers():
            dist.broadcast(b, src)


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's picklable ``obj``, in rank order, on every process (``[obj]`` when single)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-1 of a state dict's names, dtypes, shapes and bytes: equal digests, equal weights."""
    h = hashlib.sha1()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- spawning ------------------------------------------------------------------------------------
Target = Callable[..., Any]
"""``target(payload, ctx, init_method, **kwargs)``: one process's share of a run. A module-level
function (it is pickled by name into the spawned processes) that joins the group with
:func:`init_group` and returns a picklable result; :func:`run_distributed` leaves the group for it."""

_ERRORS: dict[str, type[Exception]] = {"ImportError": ImportError, "TrainingError": TrainingError}


def run_distributed(target: Target, payload: Any, nprocs: int, **main_kwargs: Any) -> list[Any]:
    """Run ``target`` in ``nprocs`` local processes (gloo on CPU, NCCL on GPUs); every rank's result.

    ``payload`` (picklable, e.g. a config's ``to_jsonable()``) goes to every process, ``main_kwargs``
    (e.g. ``write``) to rank 0 only. A user error (ValueError, ImportError, TrainingError) in any
    process comes back as one clear exception (the lowest rank's); ``nprocs == 1`` runs in this
    process. Results are read while the processes run, so a large one cannot block its sender.
    """
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    if nprocs == 1:
        return [target(payload, SINGLE, "env://", **main_kwargs)]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    outcome: list[tuple[str, int, Any]] = []
    crashed: BaseException | None = None
    with tempfile.TemporaryDirectory(prefix="napari_fibsem_ddp_") as tmp:
        init_method = Path(tmp, "store").as_uri()
        try:
            procs = mp.spawn(
                _worker,
                args=(nprocs, target, payload, init_method, queue, main_kwargs),
                nprocs=nprocs,
                join=False,
            )
            while not procs.join(timeout=0.2):
                _drain(queue, outcome)
        except Exception as e:  # a process died; prefer the clear message it sent, if any
            crashed = e
        _drain(queue, outcome)
    errors = sorted((rank, v) for k, rank, v in outcome if k == "error")
    if errors:
        kind, message = errors[0][1]
        raise _ERRORS.get(kind, TrainingSetupError)(message) from crashed
    if crashed is not None:
        raise crashed
    results = {rank: v for k, rank, v in outcome if k == "result"}
    if sorted(results) != list(range(nprocs)):
        raise RuntimeError(f"distributed run ended with results from ranks {sorted(results)} of {nprocs}")
    return [results[r] for r in range(nprocs)]


def _drain(queue: Any, into: list[tuple[str, int, Any]]) -> None:
    while not queue.empty():
        into.append(queue.get())


def _worker(
    rank: int, nprocs: int, target: Target, payload: Any, init_method: str, queue: Any, kwargs: dict
) -> None:
    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // nprocs))
    ctx = DistContext(rank=rank, world_size=nprocs, local_rank=rank)
    ok = False
    try:
        result = target(payload, ctx, init_method, **(kwargs if rank == 0 else {}))
        queue.put(("result", rank, result))
        ok = True
    except (ValueError, ImportError, TrainingError) as e:  # user errors travel back as such
        queue.put(("error", rank, (type(e).__name__, str(e))))
    finally:
        cleanup(barrier=ok)
