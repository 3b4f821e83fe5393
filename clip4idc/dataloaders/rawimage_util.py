"""Image decoding as the original: RGB, bicubic resize to a square (no crop, aspect ratio not kept), CLIP normalisation."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class DataError(RuntimeError):
    """Missing or malformed dataset files; the message names the file and the fix."""


class CorruptImageError(DataError):
    """An image file that exists but cannot be decoded (truncated, garbage bytes)."""


class RawImageExtractor:
    def __init__(self, size: int = 224, cache: bool = False):
        self.size = size
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None

    def transform(self, image: Image.Image) -> torch.Tensor:
        """torchvision's Resize([size, size], BICUBIC) + ToTensor + Normalize(CLIP), the same operations on the PIL
        image and tensor, without importing torchvision (seconds at every start)."""
        resized = image.resize((self.size, self.size), Image.BICUBIC)
        pixels = torch.from_numpy(np.array(resized, np.uint8, copy=True)).permute(2, 0, 1).float().div(255)
        mean = torch.tensor(CLIP_MEAN).view(-1, 1, 1)
        std = torch.tensor(CLIP_STD).view(-1, 1, 1)
        return pixels.sub_(mean).div_(std)

    def get_image(self, path: str) -> torch.Tensor:
        """[1, 3, size, size] float tensor of one image."""
        if self.cache is not None and path in self.cache:
            return self.cache[path]
        if not os.path.isfile(path):
            raise DataError(f"image not found: {path} (run 'make clip4idc-data' or check --features_path/--data_path)")
        try:
            with Image.open(path) as raw:
                rgb = raw.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CorruptImageError(f"{path}: unreadable image ({reason}); replace the file (run 'make clip4idc-data') "
                                    "or pass --skip_corrupt to skip its pair") from err
        image = self.transform(rgb).unsqueeze(0)
        if self.cache is not None:
            self.cache[path] = image
        return image
