"""Anchors and box coding of ZSGNet. Boxes are (y1, x1, y2, x2) in [-1, 1] image coordinates ("tlbr").

Original quirk kept: everything is in (y, x) order, because anchors are laid out row by row.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def cthw2tlbr(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], dim=-1)


def tlbr2cthw(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


def xyxy_to_yxyx(boxes: torch.Tensor) -> torch.Tensor:
    """Swap (x1, y1, x2, y2) <-> (y1, x1, y2, x2); the same permutation both ways."""
    return boxes[..., [1, 0, 3, 2]]


def create_grid(h: int, w: int) -> torch.Tensor:
    """H x W x 2 cell centres (y, x) in [-1, 1]; a single cell sits at 0."""
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h) if h > 1 else torch.zeros(1)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w) if w > 1 else torch.zeros(1)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


def anchor_shapes(ratios: Sequence[float], scales: Sequence[float]) -> torch.Tensor:
    """A x 2 (h, w) in cells: ratio outer, scale inner, h = s*sqrt(r), w = s*sqrt(1/r)."""
    r = torch.tensor(list(ratios), dtype=torch.float64)
    s = torch.tensor(list(scales), dtype=torch.float64)
    return torch.stack([s[None, :] * r[:, None].sqrt(), s[None, :] * (1 / r[:, None]).sqrt()], dim=-1).view(-1, 2)


def create_anchors(sizes: Sequence[tuple[int, int]], ratios: Sequence[float], scales: Sequence[float]) -> torch.Tensor:
    """N x 4 float64 tlbr anchors ordered (level, row, column, anchor), not clipped; N = A * sum(h * w)."""
    shapes = anchor_shapes(ratios, scales)
    out = []
    for h, w in sizes:
        centres = create_grid(h, w).view(-1, 1, 2).double().expand(-1, len(shapes), 2)
        hw = (shapes * torch.tensor([2 / h, 2 / w], dtype=torch.float64)).unsqueeze(0).expand_as(centres)
        out.append(torch.cat([centres, hw], dim=-1).reshape(-1, 4))
    # float64 like the original under current PyTorch (its numpy-derived anchor sizes promote to double).
    return cthw2tlbr(torch.cat(out))


class AnchorCache:
    """Anchors for each (feature sizes, device), built once: the loss and the evaluator ask for them every batch."""

    def __init__(self, ratios: Sequence[float], scales: Sequence[float]) -> None:
        self.ratios, self.scales = ratios, scales
        self._anchors: dict[tuple, torch.Tensor] = {}

    def __call__(self, feat_sizes: torch.Tensor, device: torch.device) -> torch.Tensor:
        sizes = tuple(tuple(int(v) for v in s) for s in feat_sizes.tolist())
        key = (sizes, str(device))
        if key not in self._anchors:
            self._anchors[key] = create_anchors(sizes, self.ratios, self.scales).to(device)
        return self._anchors[key]


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU (|boxes1| x |boxes2|), continuous coordinates, union + 1e-8 as in ZSGNet's ``IoU_values``."""
    tl = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    br = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (br - tl).clamp(min=0).prod(-1)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    return inter / (area1[:, None] + area2[None, :] - inter + 1e-8)


def paired_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of row i of ``boxes1`` with row i of ``boxes2`` (the diagonal of ``box_iou``)."""
    tl = torch.max(boxes1[:, :2], boxes2[:, :2])
    br = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    inter = (br - tl).clamp(min=0).prod(-1)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    return inter / (area1 + area2 - inter + 1e-8)


def encode(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Regression targets B x N x 4: ((cy-cy_a)/h_a, (cx-cx_a)/w_a, log(h/h_a), log(w/w_a)); no variances."""
    a = tlbr2cthw(anchors).unsqueeze(0)
    b = tlbr2cthw(boxes).unsqueeze(1)
    centre = (b[..., :2] - a[..., :2]) / (a[..., 2:] + 1e-8)
    size = torch.log(b[..., 2:] / (a[..., 2:] + 1e-8))
    return torch.cat([centre, size], dim=-1)


def decode(anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Inverse of ``encode`` for matching shapes (..., 4): anchors tlbr, deltas (dy, dx, dh, dw) -> tlbr."""
    a = tlbr2cthw(anchors)
    centre = a[..., 2:] * deltas[..., :2] + a[..., :2]
    size = torch.exp(deltas[..., 2:]) * a[..., 2:]
    return cthw2tlbr(torch.cat([centre, size], dim=-1))


def match_anchors(anchors: torch.Tensor, targets: torch.Tensor, threshold: float, use_multi: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives B x N (bool) and each sample's best anchor index (B).

    Original behaviour: positive if IoU > threshold, plus the best anchor always; no ignore band (all else negative).
    """
    ious = box_iou(targets, anchors)
    best = ious.argmax(dim=1)
    top1 = torch.zeros_like(ious, dtype=torch.bool).scatter_(1, best[:, None], True)
    positives = (ious > threshold) | top1 if use_multi else top1
    return positives, best
