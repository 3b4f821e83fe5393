"""Training-time evaluation: decode the single best-scoring anchor (no NMS) and score it against the ground truth."""
from __future__ import annotations

import torch
from torch import nn

from .anchors import AnchorCache, box_iou, decode, paired_iou, xyxy_to_yxyx


def to_pixels(boxes: torch.Tensor, img_size: torch.Tensor) -> torch.Tensor:
    """(y1, x1, y2, x2) in [-1, 1] -> (x1, y1, x2, y2) pixels of the original (h, w) image."""
    hw = img_size.to(boxes).repeat(1, 2)
    return xyxy_to_yxyx((boxes + 1) / 2 * hw)


class Evaluator(nn.Module):
    def __init__(self, ratios: list[float], scales: list[float], acc_iou_threshold: float = 0.5) -> None:
        super().__init__()
        self.acc_iou_threshold = acc_iou_threshold
        self.met_keys = ["Acc", "MaxPos"]
        self.anchors = AnchorCache(ratios, scales)

    def best_boxes(self, anchors: torch.Tensor, deltas: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Decode only the chosen anchor of each sample (B x 4, tlbr in [-1, 1])."""
        rows = torch.arange(deltas.shape[0], device=deltas.device)
        return decode(anchors[ids], deltas[rows, ids])

    @torch.no_grad()
    def forward(self, out: dict, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        annot = batch["annot"]
        scores = torch.sigmoid(out["att_out"].squeeze(-1).float())
        deltas = out["bbx_out"].float()
        anchors = self.anchors(out["feat_sizes"][: int(out["num_f_out"].reshape(-1)[0])], scores.device)
        # Original behaviour: no NMS; the single highest-scoring anchor is the prediction.
        best_scores, best_ids = scores.max(dim=1)
        pred = self.best_boxes(anchors, deltas, best_ids)
        expected_ids = box_iou(annot, anchors).argmax(dim=1)
        upper = self.best_boxes(anchors, deltas, expected_ids)
        # Training-time metric uses IoU >= threshold (eval_script.py uses the strict >).
        return {
            "Acc": (paired_iou(pred, annot) >= self.acc_iou_threshold).float().mean(),
            "MaxPos": (paired_iou(upper, annot) >= self.acc_iou_threshold).float().mean(),
            "idxs": batch["idxs"],
            "pred_boxes": to_pixels(pred, batch["img_size"]),
            "pred_scores": best_scores,
        }
