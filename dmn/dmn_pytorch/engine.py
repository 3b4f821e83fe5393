"""One training epoch and one evaluation pass (the original ``train(epoch)`` and ``evaluate(epoch)``)."""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from shared_eval.masks import MaskIoU, MaskIoUResult

from .models.dmn import resize_kwargs
from .utils.dist import mean_over_ranks
from .utils.losses import bce_loss, iou_loss
from .utils.visdom import VisdomPlots
from .visualise import save_sample_png

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    accum_iters: int = 100
    log_interval: int = 200
    backup_iters: int = 10000
    use_iou_loss: bool = False
    fix_iou_loss_scale: bool = False
    fix_accum_start: bool = False
    amp: bool = False


@dataclass
class EpochResult:
    mean_loss: float
    losses: list[float] = field(default_factory=list)
    samples: int = 0  # samples trained on (fewer than the sampler's when --skip_corrupt dropped some)


@dataclass
class EpochProgress:
    """What an epoch has accumulated up to a batch; a mid-epoch checkpoint keeps it so that a resumed epoch ends
    with the same mean loss (and scheduler step) as an uninterrupted one."""
    losses: list[float] = field(default_factory=list)  # one per optimizer step, averaged over all ranks
    pending_loss: float = 0.0  # summed loss of the batches since the last optimizer step
    samples: int = 0


def autocast_context(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when asked; plain float32 otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def upsample_to(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) -> (B, H, W), bilinear as the original's F.upsample."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", **resize_kwargs("bilinear"))[:, 0]


def unpack_batch(batch, device: torch.device):
    """Both loader outputs -> (imgs, masks, words, lengths or None, valid)."""
    if len(batch) == 5:
        imgs, masks, words, lengths, valid = batch
    else:
        imgs, masks, words = batch
        lengths = None
        masks = masks.reshape(masks.size(0), *masks.shape[-2:]).float()
        valid = torch.ones_like(masks)
    return (imgs.to(device), masks.to(device).float(), words.to(device),
            None if lengths is None else lengths.to(device), valid.to(device))


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, epoch: int,
                    cfg: TrainConfig, device: torch.device, plots: VisdomPlots | None = None,
                    start_batch: int = 0, progress: EpochProgress | None = None,
                    on_backup: Callable[[int, EpochProgress], None] | None = None) -> EpochResult:
    """Accumulates ``accum_iters`` batches per optimizer step; returns the mean of the stepped losses.

    Original: the step happens when ``batch_idx % accum_iters == 0``, so the first one comes after a single batch,
    still divided by ``accum_iters``. Each batch's loss is backpropagated at once (same gradients as the original's
    summed loss, without keeping ``accum_iters`` graphs alive). An epoch resumed at ``start_batch`` > 0 continues
    from ``progress`` and keeps the gradients already accumulated in the model.
    """
    model.train()
    if start_batch == 0:
        optimizer.zero_grad()
    done = progress if progress is not None else EpochProgress()
    step_loss = done.pending_loss
    stepped: list[float] = list(done.losses)
    num_batches = start_batch + len(loader)  # type: ignore[arg-type]
    window: list[float] = []
    start = time.time()
    bar = tqdm(loader, total=num_batches, desc=f"epoch {epoch}", dynamic_ncols=True, leave=False, initial=start_batch)
    samples = done.samples
    for batch_idx, batch in enumerate(bar, start=start_batch):
        if batch is None:  # every sample of the batch was skipped as corrupt
            continue
        imgs, masks, words, lengths, valid = unpack_batch(batch, device)
        samples += imgs.size(0)
        with autocast_context(device, cfg.amp):
            logits = model(imgs, words, lengths)
        logits = upsample_to(logits, masks.shape[-2:])
        if cfg.use_iou_loss:
            loss = iou_loss(logits, masks, valid, cfg.fix_iou_loss_scale)
        else:
            loss = bce_loss(logits, masks, valid)
        (loss / cfg.accum_iters).backward()
        step_loss += loss.item()
        # Original: step when batch_idx % accum_iters == 0, i.e. first after ONE batch; the fix steps after each
        # full group of accum_iters batches.
        boundary = (batch_idx + 1) if cfg.fix_accum_start else batch_idx
        if boundary % cfg.accum_iters == 0:
            optimizer.step()
            optimizer.zero_grad()
            value = mean_over_ranks(step_loss / cfg.accum_iters, device)  # the loss of the global batch
            stepped.append(value)
            window.append(value)
            step_loss = 0.0
            if plots is not None:
                plots.append("iteration_plt", batch_idx + (epoch - 1) * num_batches, value)
        if on_backup is not None and batch_idx % cfg.backup_iters == 0:
            # Every rank resumes with the mean pending loss: the next step's mean over ranks stays the same.
            on_backup(batch_idx, EpochProgress(list(stepped), mean_over_ranks(step_loss, device), samples))
        if batch_idx % cfg.log_interval == 0:
            elapsed = (time.time() - start) / max(len(window), 1)
            logger.info("[%5d] (%5d/%5d) | ms/batch %.3f | loss %.6f | lr %.7f", epoch, batch_idx, num_batches,
                        elapsed * 1000, float(np.mean(window)) if window else float("nan"),
                        optimizer.param_groups[0]["lr"])
            window = []
            start = time.time()
    mean_loss = float(np.mean(stepped)) if stepped else float("nan")
    if plots is not None:
        plots.append("epoch_plt", epoch, mean_loss)
    return EpochResult(mean_loss, stepped, samples)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, *, running_stats: bool = False,
             amp: bool = False, save_vis: Path | None = None, describe: Callable[[int], str] | None = None
             ) -> MaskIoUResult:
    """Cumulative IoU over the split at 39 thresholds, and precision@0.5..0.9.

    Original: evaluation runs with ``net.train()``: BatchNorm normalises each image with its own statistics (and
    updates the running ones); ``running_stats`` uses eval mode instead.
    """
    model.eval() if running_stats else model.train()
    scores = MaskIoU(align_corners=True)  # the original's torch <= 0.3 upsampling aligned corners
    for index, batch in enumerate(tqdm(loader, desc="evaluate", dynamic_ncols=True, leave=False)):
        if batch is None:  # skipped as corrupt
            continue
        imgs, masks, words, lengths, _ = unpack_batch(batch, device)
        with autocast_context(device, amp):
            logits = model(imgs, words, lengths)
        # Sigmoid first, then bilinear upsampling to the ground-truth size, as the original.
        prob = scores.probabilities(logits[:, 0].float().cpu(), tuple(masks.shape[-2:]))
        scores.update_probabilities(prob, masks.cpu())
        for b in range(prob.size(0)):
            if save_vis is not None:
                sample = index * prob.size(0) + b
                caption = describe(sample) if describe is not None else ""
                save_sample_png(save_vis / f"{sample:06d}.png", imgs[b], masks[b], prob[b], caption)
    if scores.num_samples == 0:
        raise ValueError("no sample left to evaluate: every one was skipped as corrupt (see the --skip_corrupt "
                         "lines above); replace the files named there")
    return scores.compute()
