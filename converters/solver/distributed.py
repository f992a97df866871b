"""Where the solver runs: its torch device and Caffe 1.0-style data parallelism under torchrun.

What it owns: the device of the nets and batches (``cuda`` gets the local rank under torchrun) and
the ``torch.distributed`` rank and world size (initialised from torchrun's environment when asked:
gloo on CPU, nccl on CUDA).  The gradient all-reduce itself is part of the solver's iteration.
"""
from __future__ import annotations

import os

import torch

from .errors import SolverError


def _resolve_device(device, world_size: int = 1, backend: str | None = None):
    """``None`` (no moves, the default) or a ``torch.device``; ``cuda`` gets the local rank under torchrun."""
    if device is None:
        if backend == "nccl":
            device = "cuda"
        else:
            return None
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and world_size > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def _init_distributed(distributed, device) -> tuple[int, int, str | None]:
    """``(rank, world_size, backend)``: torch.distributed's when initialised (or initialised here)."""
    if distributed is False:
        return 0, 1, None
    import torch.distributed as dist
    if not dist.is_available():
        if distributed:
            raise SolverError("distributed=True but this torch build has no torch.distributed")
        return 0, 1, None
    if not dist.is_initialized():
        if not distributed:
            return 0, 1, None
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise SolverError(f"distributed=True needs torchrun's environment ({', '.join(missing)} not set)")
        cuda = device is not None and torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), dist.get_backend()
