"""DMN's evaluation scores: cumulative IoU at 39 thresholds and precision@0.5..0.9."""
from __future__ import annotations

import numpy as np
import torch

# Original: np.arange(0, 0.96, 0.025) (39 values, float artefacts such as 0.9500000000000001 kept).
THRESHOLDS = np.arange(0.0, 0.96, 0.025).tolist()
PRECISION_IOUS = (0.5, 0.6, 0.7, 0.8, 0.9)


class MaskScores:
    """Accumulates I and U per threshold over a split (float64 sums)."""

    def __init__(self) -> None:
        self.inter = np.zeros(len(THRESHOLDS))
        self.union = np.zeros(len(THRESHOLDS))
        self.correct = np.zeros((len(PRECISION_IOUS), len(THRESHOLDS)))
        self.total = 0

    def add(self, prob: torch.Tensor, mask: torch.Tensor) -> None:
        """prob: (H, W) probabilities; mask: (H, W) ground truth (soft in low-res mode)."""
        prob = prob.float()
        mask = mask.float()
        inter = np.zeros(len(THRESHOLDS))
        union = np.zeros(len(THRESHOLDS))
        for i, t in enumerate(THRESHOLDS):
            pred = (prob > t).float()  # strict, compared in float32
            if pred.shape != mask.shape:
                inter[i], union[i] = 0.0, float(mask.sum())
                continue
            both = pred * mask
            inter[i] = float(both.sum())
            union[i] = float((pred + mask - both).sum())
        self.inter += inter
        self.union += union
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / union
        for k, level in enumerate(PRECISION_IOUS):
            self.correct[k] += iou >= level  # NaN (U = 0) fails every level
        self.total += 1

    def cumulative_iou(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.inter / self.union

    def best(self) -> tuple[float, float]:
        """(max cumulative IoU over thresholds, its threshold)."""
        ious = np.nan_to_num(self.cumulative_iou(), nan=0.0)
        i = int(np.argmax(ious))
        return float(ious[i]), THRESHOLDS[i]

    def precision(self) -> np.ndarray:
        """(5, 39) fraction of samples with IoU >= 0.5..0.9 at each threshold."""
        return self.correct / max(self.total, 1)
