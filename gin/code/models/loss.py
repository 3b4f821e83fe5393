"""ZSGLoss: focal BCE over all anchors + SmoothL1 box regression on positives (+ GIN's attention loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .anchors import AnchorCache, encode, match_anchors


class ZSGLoss(nn.Module):
    def __init__(self, ratios: list[float], scales: list[float], *, alpha: float = 0.25, gamma: float = 2.0,
                 use_focal: bool = True, use_softmax: bool = False, use_multi: bool = True,
                 matching_threshold: float = 0.6, lamb_reg: float = 1.0, use_att_loss: bool = True) -> None:
        super().__init__()
        if use_softmax and use_multi:
            raise ValueError("use_softmax=True needs use_multi=False (one positive per sample)")
        self.alpha, self.gamma = alpha, gamma
        self.use_focal, self.use_softmax, self.use_multi = use_focal, use_softmax, use_multi
        self.matching_threshold = matching_threshold
        self.lamb_reg = lamb_reg
        self.use_att_loss = use_att_loss
        self.loss_keys = ["loss", "cls_ls", "box_ls"] + (["att_ls"] if use_att_loss else [])
        self.anchors = AnchorCache(ratios, scales)

    def attention_loss(self, att_maps: list[torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean BCE-with-logits between each GARAN collect map and its IoU-map target, averaged over the 3 stages."""
        losses = [F.binary_cross_entropy_with_logits(m, batch[f"iou_annot_stage_{i}"]) for i, m in enumerate(att_maps)]
        return sum(losses) / 3.0

    def forward(self, out: dict, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        annot = batch["annot"]
        scores = out["att_out"].squeeze(-1).float()
        deltas = out["bbx_out"].float()
        anchors = self.anchors(out["feat_sizes"][: int(out["num_f_out"].reshape(-1)[0])], scores.device)
        positives, best = match_anchors(anchors, annot, self.matching_threshold, self.use_multi)
        pos = positives.float()

        box_l = F.smooth_l1_loss(deltas, encode(anchors, annot), reduction="none").sum(dim=2)
        box_loss = ((box_l * pos).sum(dim=1) / pos.sum(dim=1)).mean()

        if self.use_softmax:
            cls_loss = F.cross_entropy(scores, best, reduction="none").sum() / pos.sum()
        else:
            weights = None
            if self.use_focal:
                p = torch.sigmoid(scores)
                # Original quirk kept: alpha weights the negatives and (1 - alpha) the positives (reverse of RetinaNet).
                alphas = pos * (1 - self.alpha) + (1 - pos) * self.alpha
                weights = ((pos * (1 - p) + (1 - pos) * p).pow(self.gamma) * alphas).detach()
            cls_loss = F.binary_cross_entropy_with_logits(scores, pos, weight=weights, reduction="none").sum() / pos.sum()

        if torch.isnan(box_loss) or torch.isnan(cls_loss):
            # Original behaviour: NaN losses are replaced by constants (box 0.01, cls 1) and the step goes on.
            box_loss = box_loss.new_full(box_loss.shape, 0.01, requires_grad=True)
            cls_loss = cls_loss.new_ones(cls_loss.shape, requires_grad=True)

        loss = self.lamb_reg * box_loss + cls_loss
        result = {"cls_ls": cls_loss, "box_ls": box_loss}
        if self.use_att_loss:
            att_loss = self.attention_loss([m.float() for m in out["att_maps"]], batch)
            loss = loss + att_loss
            result["att_ls"] = att_loss
        result["loss"] = loss
        return result
