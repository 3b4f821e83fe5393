"""Image and mask transforms of the original ``train.py``: resize the longer side, keep the aspect ratio."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.dmn import resize_kwargs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    scale = min(size / height, size / width)
    return int(np.round(height * scale)), int(np.round(width * scale))


def resize_longer_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a (C, H, W) or (H, W) tensor so its longer side is ``size`` (no padding)."""
    squeeze = x.dim() == 2
    batch = x[None, None] if squeeze else x[None]
    out = F.interpolate(batch.float(), size=resized_shape(*x.shape[-2:], size), mode="bilinear",
                        **resize_kwargs("bilinear"))
    return out[0, 0] if squeeze else out[0]


def image_to_tensor(image: np.ndarray, size: int) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised float (3, h, w): ToTensor, resize, ImageNet mean/std."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)
    x = resize_longer_side(x, size)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def denormalise(x: torch.Tensor) -> np.ndarray:
    """(3, h, w) normalised tensor -> (h, w, 3) uint8 for display."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    rgb = (x.detach().cpu().float() * std + mean).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
