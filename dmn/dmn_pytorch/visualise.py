"""One PNG per evaluated sample: image | ground truth | predicted probability, with the query above."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .data.transforms import denormalise
from .models.dmn import resize_kwargs


def _gray(x: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    x = x.detach().float().cpu()[None, None]
    x = F.interpolate(x, size=size, mode="bilinear", **resize_kwargs("bilinear"))[0, 0]
    return np.repeat((x.clamp(0, 1).numpy() * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def save_sample_png(path: Path, img: torch.Tensor, mask: torch.Tensor, prob: torch.Tensor, caption: str) -> None:
    image = denormalise(img)
    size = image.shape[:2]
    panels = np.concatenate([image, _gray(mask, size), _gray(prob, size)], axis=1)
    canvas = Image.new("RGB", (panels.shape[1], panels.shape[0] + 14), "white")
    canvas.paste(Image.fromarray(panels), (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), caption, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    canvas.save(tmp)
    os.replace(tmp, path)
