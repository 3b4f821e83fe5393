"""GIN's attention-loss targets: an IoU map between the ground truth and a same-sized box centred on every cell."""
from __future__ import annotations

import cv2
import numpy as np


def iou_groundtruth(box01_yx: np.ndarray, resize: int) -> list[np.ndarray]:
    """Three float64 maps (resize/8, /16, /32 square), indexed [row=y][col=x], from a (y1, x1, y2, x2) box in [0, 1].

    Original quirks kept: the box centre is in stride-8 cells but its size is divided by 16 (a half-size box); cells are
    centred on integer coordinates; candidate boxes are clipped to the grid, the ground truth is not; IoU is smoothed
    by 1e-7. The coarser maps are bilinear ``cv2.resize`` of the finest one.
    """
    g = resize // 8
    y1, x1, y2, x2 = (np.asarray(box01_yx, dtype=np.float64) * resize).tolist()
    cy, cx = (y1 + y2) / 16, (x1 + x2) / 16
    th, tw = (y2 - y1) / 16, (x2 - x1) / 16
    gt = (cy - th / 2, cx - tw / 2, cy + th / 2, cx + tw / 2)
    i = np.arange(g, dtype=np.float64)[:, None]
    j = np.arange(g, dtype=np.float64)[None, :]
    c0, c1 = np.maximum(i - th / 2, 0.0), np.maximum(j - tw / 2, 0.0)
    c2, c3 = np.minimum(i + th / 2, g), np.minimum(j + tw / 2, g)
    inter = np.maximum(np.minimum(gt[2], c2) - np.maximum(gt[0], c0), 0.0) * \
        np.maximum(np.minimum(gt[3], c3) - np.maximum(gt[1], c1), 0.0)
    union = (gt[2] - gt[0]) * (gt[3] - gt[1]) + (c2 - c0) * (c3 - c1) - inter
    stage0 = (inter + 1e-7) / (union + 1e-7)
    return [stage0, cv2.resize(stage0, (resize // 16, resize // 16)), cv2.resize(stage0, (resize // 32, resize // 32))]
