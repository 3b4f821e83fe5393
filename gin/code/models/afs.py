"""Adaptive Feature Selection (GIN): every backbone level is resampled to one stage's resolution, projected, and
mixed with language-predicted softmax weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureNormalize(nn.Module):
    """Resample one level by ``scale`` (< 1 average-pools, > 1 upsamples bilinearly), then conv3x3-BN-LReLU-conv1x1-BN-LReLU."""

    def __init__(self, in_ch: int, hidden: int, out_ch: int, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.conv1 = nn.Conv2d(in_ch, hidden, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.act1 = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = nn.Conv2d(hidden, out_ch, 1)
        self.norm2 = nn.BatchNorm2d(out_ch)
        self.act2 = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale < 1:
            x = F.avg_pool2d(x, round(1 / self.scale))
        elif self.scale > 1:
            # nn.UpsamplingBilinear2d in the original, i.e. bilinear with align_corners=True.
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=True)
        x = self.act1(self.norm1(self.conv1(x)))
        return self.act2(self.norm2(self.conv2(x)))


class AdaptiveFeatureSelection(nn.Module):
    """AFS for target ``stage`` over ``len(in_channels)`` levels; ``afs_modules.k`` always processes level k."""

    def __init__(self, stage: int, in_channels: list[int], lang_dim: int, hidden: int, out_ch: int) -> None:
        super().__init__()
        self.afs_modules = nn.ModuleList(
            FeatureNormalize(ch, hidden, out_ch, scale=2.0 ** (level - stage)) for level, ch in enumerate(in_channels)
        )
        self.afs_weights = nn.Linear(lang_dim, len(in_channels))

    def forward(self, lang: torch.Tensor, visuals: list[torch.Tensor]) -> torch.Tensor:
        maps = torch.stack([m(v) for m, v in zip(self.afs_modules, visuals)], dim=1)  # B x L x C x H x W
        weights = F.softmax(self.afs_weights(lang), dim=-1)  # B x L
        return torch.einsum("bl,blchw->bchw", weights, maps)
