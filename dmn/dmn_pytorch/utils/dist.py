"""torchrun set-up: one process per device, rank 0 evaluates, saves and plots."""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed_mode() -> DistInfo:
    """From torchrun's RANK/WORLD_SIZE/LOCAL_RANK: nccl on CUDA, gloo on CPU. A single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    # Long timeout: the other ranks wait at the next collective while rank 0 evaluates a whole split.
    torch_dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                                  timeout=datetime.timedelta(hours=4))
    return info


@contextmanager
def main_process_first(info: DistInfo):
    """Rank 0 runs the block first (e.g. writes the split files), the other ranks after it is done."""
    if info.enabled and not info.is_main:
        torch_dist.barrier()
    yield
    if info.enabled and info.is_main:
        torch_dist.barrier()


def broadcast_from_main(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's value on every rank (keeps the LR scheduler identical across ranks)."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    torch_dist.broadcast(tensor, src=0)
    return float(tensor.item())


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of ``value`` over all ranks (itself in a single process): a loss logged under torchrun is the
    global batch's, as one process with that batch would log it."""
    if not torch_dist.is_initialized() or torch_dist.get_world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return float(tensor.item()) / torch_dist.get_world_size()


def all_ranks_agree(value: object, info: DistInfo) -> bool:
    """Whether every rank holds the same ``value`` (a small picklable object); the same answer on every rank."""
    if not info.enabled:
        return True
    values: list[object] = [None] * info.world_size
    torch_dist.all_gather_object(values, value)
    return all(v == values[0] for v in values)
