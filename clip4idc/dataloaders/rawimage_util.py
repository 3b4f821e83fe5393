"""Image decoding as the original: RGB, bicubic resize to a square (no crop, aspect ratio not kept), CLIP normalisation."""
from __future__ import annotations

import os

import torch
from PIL import Image
from torchvision.transforms import Compose, InterpolationMode, Normalize, Resize, ToTensor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class DataError(RuntimeError):
    """Missing or malformed dataset files; the message names the file and the fix."""


class RawImageExtractor:
    def __init__(self, size: int = 224, cache: bool = False):
        self.size = size
        self.transform = Compose([
            Resize([size, size], interpolation=InterpolationMode.BICUBIC),
            ToTensor(),
            Normalize(CLIP_MEAN, CLIP_STD),
        ])
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None

    def get_image(self, path: str) -> torch.Tensor:
        """[1, 3, size, size] float tensor of one image."""
        if self.cache is not None and path in self.cache:
            return self.cache[path]
        if not os.path.isfile(path):
            raise DataError(f"image not found: {path} (run 'make clip4idc-data' or check --features_path/--data_path)")
        image = self.transform(Image.open(path).convert("RGB")).unsqueeze(0)
        if self.cache is not None:
            self.cache[path] = image
        return image
