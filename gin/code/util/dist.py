"""Distributed helpers: set-up from torchrun's environment, rank queries, reductions."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); joins the process group when started by torchrun / torch.distributed.launch (WORLD_SIZE > 1).

    CPU uses gloo, CUDA nccl with one GPU per process (LOCAL_RANK).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return dist.get_rank(), dist.get_world_size()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` when not distributed)."""
    if not is_dist():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def weighted_mean(values: dict[str, torch.Tensor], count: torch.Tensor) -> dict[str, float]:
    """Mean over every process of per-process means weighted by their sample counts."""
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) * count for k in keys] + [count.float()])
    if is_dist():
        dist.all_reduce(stacked)
    return {k: (stacked[i] / stacked[-1]).item() for i, k in enumerate(keys)}


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
