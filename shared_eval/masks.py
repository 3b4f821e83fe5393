"""Referring-segmentation mask metrics as DMN computes them (``dmn_pytorch/train.py``, ``evaluate``).

Per sample the logits go through a sigmoid, are bilinearly upsampled to the ground-truth size, and are
thresholded at each of DMN's 39 thresholds ``np.arange(0, 0.96, 0.025)`` (strict ``>``, compared in float32).
For each threshold: I = sum(pred * gt), U = sum(pred + gt - pred * gt). DMN's "overall IoU" is sum(I)/sum(U)
over the split (printed as "mIoU"; the best threshold is reported), precision@k is the fraction of
samples with I/U >= k. We accumulate in float64 (DMN used float32 sums, which round above 2^24).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MaskIoU", "MaskIoUResult", "THRESHOLDS", "PRECISION_AT"]

# DMN's thresholds, float artefacts included (e.g. 0.9500000000000001), compared in float32.
THRESHOLDS = np.arange(0, 0.96, 0.025)
PRECISION_AT = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class MaskIoUResult:
    thresholds: np.ndarray  # (39,)
    overall_iou: np.ndarray  # (39,) cumulative sum(I) / sum(U) per threshold
    precision: dict[float, np.ndarray]  # k -> (39,) fraction of samples with I/U >= k
    mean_iou: np.ndarray  # (39,) mean of per-sample I/U, a sample with U = 0 counting 0
    num_samples: int

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.overall_iou))

    @property
    def best_overall_iou(self) -> float:
        """What DMN reports: the maximum over thresholds (threshold chosen on the evaluated split)."""
        return float(self.overall_iou[self.best_index])

    @property
    def best_threshold(self) -> float:
        return float(self.thresholds[self.best_index])

    def as_dict(self) -> dict:
        i = self.best_index
        out = {"overall_iou": self.best_overall_iou, "threshold": self.best_threshold,
               "mean_iou": float(self.mean_iou[i]), "num_samples": self.num_samples}
        for k, v in self.precision.items():
            out[f"precision@{k}"] = float(v[i])
        return out


class MaskIoU:
    """Accumulates DMN's mask statistics over a split.

    ``align_corners`` defaults to True: DMN was written for PyTorch <= 0.3, whose bilinear upsampling
    behaved like ``align_corners=True`` (today's default is False). Ground truth may be soft (DMN's
    low-resolution mode resizes it bilinearly without re-binarising), binary in ``--high-res`` mode.
    """

    def __init__(self, thresholds: np.ndarray = THRESHOLDS, precision_at: tuple[float, ...] = PRECISION_AT,
                 align_corners: bool = True):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self._t32 = torch.from_numpy(self.thresholds.astype(np.float32))
        self.precision_at = tuple(precision_at)
        self.align_corners = align_corners
        self.reset()

    def reset(self) -> None:
        n = len(self.thresholds)
        self.cum_i = np.zeros(n)
        self.cum_u = np.zeros(n)
        self._hits = {k: np.zeros(n, dtype=np.int64) for k in self.precision_at}
        self._iou_sum = np.zeros(n)
        self.num_samples = 0

    def probabilities(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """sigmoid, then bilinear upsampling to ``size`` (sigmoid first, as DMN)."""
        prob = torch.sigmoid(logits.float())
        if tuple(prob.shape[-2:]) != tuple(size):
            prob = F.interpolate(prob[None, None] if prob.dim() == 2 else prob[:, None], size=size,
                                 mode="bilinear", align_corners=self.align_corners)
            prob = prob[0, 0] if logits.dim() == 2 else prob[:, 0]
        return prob

    def update(self, logits: torch.Tensor, gt: torch.Tensor) -> None:
        """Add one sample (logits (h, w), gt (H, W)) or a batch ((B, h, w), (B, H, W))."""
        logits, gt = torch.as_tensor(logits), torch.as_tensor(gt)
        if logits.dim() == 2:
            logits, gt = logits[None], gt[None]
        if logits.dim() != 3 or gt.dim() != 3 or len(logits) != len(gt):
            raise ValueError(f"logits and gt must be (h, w)/(H, W) or (B, h, w)/(B, H, W); got "
                             f"{tuple(logits.shape)} and {tuple(gt.shape)}")
        self.update_probabilities(self.probabilities(logits, tuple(gt.shape[-2:])), gt)

    def update_probabilities(self, prob: torch.Tensor, gt: torch.Tensor) -> None:
        """Add samples whose probabilities are already at ground-truth resolution ((B, H, W) or (H, W))."""
        prob = torch.as_tensor(prob, dtype=torch.float32)
        gt = torch.as_tensor(gt).to(device=prob.device, dtype=torch.float32)
        if prob.dim() == 2:
            prob, gt = prob[None], gt[None]
        if prob.shape != gt.shape:
            raise ValueError(f"probabilities {tuple(prob.shape)} and ground truth {tuple(gt.shape)} differ in shape")
        thresholds = self._t32.to(prob.device)
        for p, g in zip(prob, gt):
            pred = (p[None] > thresholds[:, None, None]).double()  # (T, H, W)
            g64 = g.double()[None]
            inter = (pred * g64).sum((1, 2)).cpu().numpy()
            union = (pred + g64 - pred * g64).sum((1, 2)).cpu().numpy()
            self.cum_i += inter
            self.cum_u += union
            with np.errstate(invalid="ignore", divide="ignore"):
                iou = inter / union  # NaN when U = 0: fails every precision test, as in DMN
            for k in self.precision_at:
                self._hits[k] += iou >= k
            self._iou_sum += np.where(union > 0, np.nan_to_num(iou), 0.0)
            self.num_samples += 1

    def compute(self) -> MaskIoUResult:
        if self.num_samples == 0:
            raise ValueError("MaskIoU.compute() called before any update()")
        with np.errstate(invalid="ignore", divide="ignore"):
            overall = np.where(self.cum_u > 0, self.cum_i / np.where(self.cum_u > 0, self.cum_u, 1), 0.0)
        return MaskIoUResult(self.thresholds.copy(), overall,
                             {k: v / self.num_samples for k, v in self._hits.items()},
                             self._iou_sum / self.num_samples, self.num_samples)
