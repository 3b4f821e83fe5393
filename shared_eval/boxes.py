"""Box IoU and grounding accuracy with ZSGNet/GIN conventions.

Boxes are ``x1, y1, x2, y2`` in pixels, continuous convention (area ``(x2 - x1) * (y2 - y1)``, no +1),
arithmetic in torch float32, ``IoU = inter / (union + 1e-8)``. In float32 an exact 0.5 stays 0.5 (the
1e-8 is absorbed), so it fails ZSGNet's ``eval_script.py`` test ``IoU > 0.5`` and passes the training-time
``Evaluator`` test ``IoU >= 0.5``: both are offered, by name.
"""

from __future__ import annotations

import ast
import csv
import pickle
from pathlib import Path

import torch

__all__ = ["box_iou", "paired_box_iou", "grounding_accuracy", "boxes_to_pixels", "evaluate_prediction_file",
           "EVAL_SCRIPT", "TRAIN_EVALUATOR"]

EVAL_SCRIPT = "eval_script"  # code/eval_script.py: IoU > 0.5
TRAIN_EVALUATOR = "evaluator"  # code/evaluator.py Evaluator: IoU >= acc_iou_threshold (0.5)


def _as_boxes(boxes) -> torch.Tensor:
    t = torch.as_tensor(boxes)
    if t.dtype != torch.float32:
        t = t.to(torch.float32)
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2 or t.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as x1, y1, x2, y2; got {tuple(t.shape)}")
    return t


def box_iou(boxes1, boxes2) -> torch.Tensor:
    """Pairwise IoU, shape (N, M), float32, as ZSGNet's ``anchors.IoU_values``."""
    a, b = _as_boxes(boxes1), _as_boxes(boxes2)
    b = b.to(a.device)
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    sides = torch.clamp(bottom_right - top_left, min=0)
    inter = sides[..., 0] * sides[..., 1]
    wh_a, wh_b = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    area_a, area_b = wh_a[:, 0] * wh_a[:, 1], wh_b[:, 0] * wh_b[:, 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / (union + 1e-8)


def paired_box_iou(pred, gt) -> torch.Tensor:
    """IoU of each prediction with its own ground truth, shape (N,) (the diagonal of ``box_iou``)."""
    p, g = _as_boxes(pred), _as_boxes(gt)
    g = g.to(p.device)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {tuple(p.shape)} and {tuple(g.shape)}")
    top_left = torch.max(p[:, :2], g[:, :2])
    bottom_right = torch.min(p[:, 2:], g[:, 2:])
    sides = torch.clamp(bottom_right - top_left, min=0)
    inter = sides[:, 0] * sides[:, 1]
    wh_p, wh_g = p[:, 2:] - p[:, :2], g[:, 2:] - g[:, :2]
    union = wh_p[:, 0] * wh_p[:, 1] + wh_g[:, 0] * wh_g[:, 1] - inter
    return inter / (union + 1e-8)


def grounding_accuracy(pred, gt, *, rule: str = EVAL_SCRIPT, threshold: float = 0.5) -> float:
    """Fraction of predictions whose IoU with their ground truth passes ``threshold``.

    ``rule=EVAL_SCRIPT`` counts ``IoU > threshold`` (the reported test numbers); ``rule=TRAIN_EVALUATOR``
    counts ``IoU >= threshold`` (the accuracy logged during training). An empty input gives 0.0.
    """
    iou = paired_box_iou(pred, gt) if len(pred) else torch.zeros(0)
    if rule == EVAL_SCRIPT:
        hits = iou > threshold
    elif rule == TRAIN_EVALUATOR:
        hits = iou >= threshold
    else:
        raise ValueError(f"rule must be {EVAL_SCRIPT!r} or {TRAIN_EVALUATOR!r}, got {rule!r}")
    return float(hits.float().mean()) if len(iou) else 0.0


def boxes_to_pixels(boxes_yxyx, img_size) -> torch.Tensor:
    """Map model boxes ``y1, x1, y2, x2`` in [-1, 1] to pixel ``x1, y1, x2, y2`` (ZSGNet ``Evaluator``).

    ``img_size``: (N, 2) of (h, w), or one (h, w) for all boxes.
    """
    b = _as_boxes(boxes_yxyx)
    hw = torch.as_tensor(img_size, dtype=torch.float32, device=b.device)
    if hw.dim() == 1:
        hw = hw[None].expand(len(b), 2)
    scaled = (b + 1) / 2
    scaled = torch.cat([hw * scaled[:, :2], hw * scaled[:, 2:]], 1)
    return scaled[:, [1, 0, 3, 2]]


def evaluate_prediction_file(pred_file: str | Path, gt_file: str | Path,
                             rule: str = EVAL_SCRIPT) -> tuple[float, int, int]:
    """ZSGNet/GIN ``eval_script.py``: (accuracy, correct, total) of a prediction pickle against the csv.

    The pickle is a list of ``{"id": row index in the csv, "pred_boxes": x1y1x2y2 pixels, ...}``; only the
    first prediction of each id counts and the denominator is the number of distinct ids. The csv has a
    ``bbox`` column holding ``[x1, y1, x2, y2]``.
    """
    pred_file, gt_file = Path(pred_file), Path(gt_file)
    for p in (pred_file, gt_file):
        if not p.is_file():
            raise FileNotFoundError(f"file not found: {p}")
    with pred_file.open("rb") as f:
        predictions = pickle.load(f)
    if not isinstance(predictions, list):
        raise ValueError(f"{pred_file}: expected a list of prediction dicts, got {type(predictions).__name__}")
    with gt_file.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "bbox" not in rows[0]:
        raise ValueError(f"{gt_file}: no 'bbox' column")
    seen: set[int] = set()
    pred_boxes, gt_boxes = [], []
    for p in predictions:
        ind = int(p["id"])
        if ind in seen:
            continue
        seen.add(ind)
        if not 0 <= ind < len(rows):
            raise ValueError(f"{pred_file}: prediction id {ind} is not a row of {gt_file} ({len(rows)} rows)")
        gt_boxes.append([float(v) for v in ast.literal_eval(rows[ind]["bbox"])])
        pred_boxes.append([float(v) for v in torch.as_tensor(p["pred_boxes"]).flatten().tolist()])
    if not pred_boxes:
        raise ValueError(f"{pred_file}: no predictions")
    iou = paired_box_iou(pred_boxes, gt_boxes)
    correct = int((iou > 0.5).sum() if rule == EVAL_SCRIPT else (iou >= 0.5).sum())
    return correct / len(iou), correct, len(iou)
