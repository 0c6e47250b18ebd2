"""Distributed data parallel under torchrun, on one host or several (docs/multinode.md):
process-group set-up, sharding, and exchanging objects across ranks. ``rank`` is the global
rank (only global rank 0 writes files); ``local_rank`` only picks this host's GPU. With one
process every function is a no-op."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather as all_gather_with_grad

from aam_core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(preference: str | None) -> torch.device:
    if preference in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo
    on CPUs; each rank takes GPU ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device)
    if target.type == "cuda":
        target = torch.device("cuda", local)
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=target)


def shard(rows: np.ndarray, ctx: DistContext, *, pad: bool) -> np.ndarray:
    """This rank's share of ``rows`` (already in epoch order). With ``pad`` every rank gets the
    same count (DDP needs the same number of steps), repeating rows from the start."""
    if not ctx.enabled:
        return rows
    if pad and rows.size % ctx.world_size:
        extra = ctx.world_size - rows.size % ctx.world_size
        rows = np.concatenate([rows, rows[:extra]])
    return rows[ctx.rank :: ctx.world_size]


def gather_objects(obj: T, ctx: DistContext) -> list[T]:
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T, ctx: DistContext) -> T:
    """Global rank 0's ``obj`` on every rank: what only rank 0's host can read (its run
    directory) reaches the other hosts without a shared file system."""
    if not ctx.enabled:
        return obj
    box: list[Any] = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def require_same(values: dict[str, Any], ctx: DistContext) -> None:
    """Raise the same :class:`ConfigError` on every rank when some rank's ``values`` (input
    file digests, settings) differ from global rank 0's: each host reads its own copy of
    the inputs, and a copy that differs would otherwise train on a mixture, unnoticed."""
    if not ctx.enabled:
        return
    every = gather_objects(values, ctx)
    first = every[0]
    differing = [
        f"rank {rank}: {key}"
        for rank, other in enumerate(every)
        for key in sorted(first.keys() | other.keys())
        if other.get(key) != first.get(key)
    ]
    if differing:
        shown = ", ".join(differing[:8]) + (" ..." if len(differing) > 8 else "")
        raise ConfigError(
            "every process of a distributed run must read identical input files with "
            f"identical settings; these differ from rank 0: {shown}"
        )


def gather_rows_with_grad(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate ``x [B_r, ...]`` of every rank (sizes may differ), keeping gradients: each
    rank's slice sends its gradient back to the rank that computed it."""
    if not ctx.enabled:
        return x
    sizes = gather_objects(int(x.shape[0]), ctx)
    biggest = max(sizes)
    padded = torch.cat([x, x.new_zeros((biggest - x.shape[0], *x.shape[1:]))])
    parts = all_gather_with_grad(padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


def gather_counts(counts: sp.csr_matrix, ctx: DistContext) -> sp.csr_matrix:
    if not ctx.enabled:
        return counts
    return sp.vstack(gather_objects(counts, ctx)).tocsr()


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when it is true on any (stop requests, early stopping)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
