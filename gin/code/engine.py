"""The training and evaluation loops (one epoch each)."""
from __future__ import annotations

import contextlib
import sys
import logging

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from errors import DataError
from util.dist import is_main_process, weighted_mean

LOG = logging.getLogger(__name__)


class SmoothedDict:
    """fastai-style debiased exponential moving averages (beta 0.9), as the original logged training figures."""

    def __init__(self, beta: float = 0.9) -> None:
        self.beta, self.n, self.avg = beta, 0, {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        self.n += 1
        for k, v in values.items():
            self.avg[k] = self.beta * self.avg.get(k, 0.0) + (1 - self.beta) * float(v)

    @property
    def smooth(self) -> dict[str, float]:
        return {k: v / (1 - self.beta ** self.n) for k, v in self.avg.items()}


def take_skipped(batch: dict[str, torch.Tensor], loader: DataLoader) -> bool:
    """Record on the dataset the rows a loader worker skipped as corrupt (--skip_corrupt); False when the batch is
    left empty."""
    skipped = batch.pop("skipped", None)
    if skipped is not None:
        loader.dataset.skipped_rows.update(skipped.tolist())
    return bool(batch)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled; a no-op context otherwise (CPU runs stay float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(model: nn.Module, loss_fn: nn.Module, eval_fn: nn.Module, loader: DataLoader,
                    optimizer: torch.optim.Optimizer, device: torch.device, *, amp: bool = False,
                    max_batches: int = -1) -> tuple[dict[str, float], dict[str, float]]:
    model.train()
    losses, metrics = SmoothedDict(), SmoothedDict()
    bar = tqdm(loader, desc="train", leave=False, disable=not (is_main_process() and sys.stderr.isatty()), dynamic_ncols=True)
    for step, batch in enumerate(bar):
        if 0 < max_batches <= step:
            break
        if not take_skipped(batch, loader):
            continue
        batch = to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            out = model(batch)
        out_loss = loss_fn(out, batch)
        out_loss["loss"].backward()
        optimizer.step()
        metric = eval_fn(out, batch)
        losses.add({k: v.detach() for k, v in out_loss.items()})
        metrics.add({k: metric[k] for k in eval_fn.met_keys})
        bar.set_postfix_str(f"loss {losses.smooth['loss']:.4f} acc {metrics.smooth['Acc']:.4f}")
    count = torch.tensor(1.0, device=device)
    return (weighted_mean({k: torch.tensor(v, device=device) for k, v in losses.smooth.items()}, count),
            weighted_mean({k: torch.tensor(v, device=device) for k, v in metrics.smooth.items()}, count))


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, eval_fn: nn.Module, loader: DataLoader, device: torch.device, *,
             amp: bool = False, desc: str = "eval") -> tuple[dict[str, float], dict[str, float], list[dict]]:
    """Sample-weighted mean losses and metrics over the loader (all processes) and this process's predictions."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), device=device)
    predictions: list[dict] = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not (is_main_process() and sys.stderr.isatty()), dynamic_ncols=True):
        if not take_skipped(batch, loader):
            continue
        batch = to_device(batch, device)
        with autocast(device, amp):
            out = model(batch)
        out_loss = loss_fn(out, batch)
        metric = eval_fn(out, batch)
        n = batch["img"].shape[0]
        for k in list(loss_fn.loss_keys) + list(eval_fn.met_keys):
            value = out_loss[k] if k in out_loss else metric[k]
            sums[k] = sums.get(k, 0) + value.detach().float().reshape(()) * n
        count += n
        predictions += [
            {"id": int(i), "pred_boxes": box, "pred_scores": score}
            for i, box, score in zip(metric["idxs"].tolist(), metric["pred_boxes"].tolist(), metric["pred_scores"].tolist())
        ]
    if not sums:
        raise DataError(f"no sample of {getattr(loader.dataset, 'csv_file', 'the split')} could be used (all were "
                        f"skipped as corrupt); check the data or run 'make gin-data'")
    means = weighted_mean({k: v / count for k, v in sums.items()}, count)
    losses = {k: means[k] for k in loss_fn.loss_keys}
    metrics = {k: means[k] for k in eval_fn.met_keys}
    return losses, metrics, predictions
