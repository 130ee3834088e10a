"""Distributed helpers over PyTorch's own engine (torchrun + DDP): the same command runs on one
process, several GPUs or several nodes. nccl on GPUs, gloo on CPU."""

from __future__ import annotations

import gc
import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 logs, writes checkpoints and evaluates."""
    return rank() == 0


def setup(device: str = "auto") -> torch.device:
    """Join the process group when started by torchrun (WORLD_SIZE > 1) and pick the device.

    ``auto``: the LOCAL_RANK-th GPU when CUDA is available, else the CPU. The backend follows
    the device: nccl for CUDA, gloo for the CPU.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not is_distributed():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dev


def cleanup() -> None:
    """Leave the process group. Call it after the DDP model is out of reach.

    DDP's hooks keep the model in a reference cycle, so dropping the last name does not free it.
    A model that outlives the group is freed at interpreter exit, and there gloo may abort the
    process ("terminate called without an active exception", SIGABRT): the DDP test's two CPU
    processes did in 12 of 40 runs without ``gc.collect()`` and in 0 of 40 with it.
    """
    if is_distributed():
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (a list of one without DDP)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper."""
    return model.module if hasattr(model, "module") else model
