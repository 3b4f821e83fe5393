"""Data-parallel training under torchrun (gloo on CPU, nccl on GPU).

Gradients are averaged across processes after every backward pass (the all-reduce DistributedDataParallel does),
done by hand so that the same code serves cross-entropy training and SCST, whose loss comes from a beam search
that does not go through the module's ``forward``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # where collective-communication tensors live (cuda for nccl)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed_mode() -> DistInfo:
    """Join the process group described by torchrun's environment variables (single process without them)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, store=restart_store(rank, world_size), rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, f"cuda:{local_rank}" if backend == "nccl" else "cpu")


def restart_store(rank: int, world_size: int) -> dist.Store:
    """torchrun's store, with the keys of each elastic restart under their own prefix.

    torchrun keeps one store across restarts: without the prefix, a restarted worker can read the address a killed
    worker of the previous attempt published and wait for it (gloo: "connectFullMesh failed ... Connection refused").
    """
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=rank == 0 and not agent_store, timeout=timedelta(minutes=30))
    return dist.PrefixStore(f"restart_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def broadcast_parameters(model: nn.Module, info: DistInfo) -> None:
    if info.distributed:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(model: nn.Module, info: DistInfo) -> None:
    if not info.distributed:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def token_share(n_local: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """world_size * this rank's share of the global batch's tokens: scaling each rank's mean loss by it makes the
    averaged gradient that of the mean over the whole global batch, as with one process."""
    if not info.distributed:
        return torch.ones((), device=n_local.device)
    total = n_local.detach().clone().to(info.device)
    dist.all_reduce(total)
    return (n_local * info.world_size / total.to(n_local.device)).float()


def broadcast_float(value: float, info: DistInfo) -> float:
    """Rank 0's value on every rank (validation runs on rank 0 only; every rank then takes the same decisions)."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.broadcast(t, src=0)
    return float(t.item())


def gather_objects(obj: object, info: DistInfo) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not info.distributed:
        return [obj]
    objects = [None] * info.world_size
    dist.all_gather_object(objects, obj)
    return objects


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
