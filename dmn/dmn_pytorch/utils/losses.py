"""Training losses of the original (``BCEWithLogitsLoss`` or ``--iou-loss``), over a batch with padding."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits over each sample's real pixels, then over the batch (B=1: ``BCEWithLogitsLoss()``)."""
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid
    return (per_pixel.flatten(1).sum(1) / valid.flatten(1).sum(1)).mean()


def iou_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, fix_scale: bool = False
             ) -> torch.Tensor:
    """1 - soft IoU of the whole map, per sample, averaged over the batch.

    The original divides (H - IoU) by the map height H (the first dim of its squeezed map), giving 1 - IoU/H;
    ``fix_scale`` gives 1 - IoU.
    """
    prob = torch.sigmoid(logits) * valid
    inter = (prob * target).flatten(1).sum(1)
    union = (prob + target - prob * target).flatten(1).sum(1)
    iou = inter / union
    if fix_scale:
        return (1 - iou).mean()
    # Original IoULoss(size_average=True) on a squeezed (H, W) map: (H - IoU) / H.
    heights = valid.amax(dim=-1).sum(dim=-1)
    return ((heights - iou) / heights).mean()
