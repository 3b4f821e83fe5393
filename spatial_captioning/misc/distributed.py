"""torchrun set-up (env:// from RANK / WORLD_SIZE / LOCAL_RANK) and gradient averaging."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed_mode(device_kind: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); a plain process is rank 0 of 1."""
    cuda = device_kind == "cuda" and torch.cuda.is_available()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return rank, world, torch.device(f"cuda:{local}" if cuda else "cpu")


def is_main(rank: int) -> bool:
    return rank == 0


def broadcast_parameters(model: torch.nn.Module) -> None:
    if dist.is_available() and dist.is_initialized():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, 0)


def average_gradients(model: torch.nn.Module) -> None:
    """All-reduce gradients by hand: SCST samples through model.sample, which DDP's forward hook never sees."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def average_scalar(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the processes (no gradient); ``value`` itself in a plain process.

    A loss divided by the mean token count, with gradients then averaged, has the gradient of one process's loss
    over the whole global batch (as the original's nn.DataParallel computed it), whatever each process's share."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    total = value.detach().clone().double()
    dist.all_reduce(total)
    return (total / dist.get_world_size()).to(value.dtype)


def gather_objects(obj) -> list:
    """Every process's ``obj``, in rank order (a list of one in a plain process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
