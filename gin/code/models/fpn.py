"""The FPN of ZSGNet (``FPN_backbone``): P3-P5 top-down, P6/P7 strided convs, P8 global average pool."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], dim: int = 256, four_levels: bool = False) -> None:
        super().__init__()
        c3, c4, c5 = in_channels
        self.four_levels = four_levels
        # Attribute order fixes the state_dict order of the original (P7_2 first).
        self.P7_2 = nn.Conv2d(dim, dim, 3, stride=2, padding=1)
        self.P6 = nn.Conv2d(c5, dim, 3, stride=2, padding=1)
        self.P5_1 = nn.Conv2d(c5, dim, 1)
        self.P5_2 = nn.Conv2d(dim, dim, 3, padding=1)
        self.P4_1 = nn.Conv2d(c4, dim, 1)
        self.P4_2 = nn.Conv2d(dim, dim, 3, padding=1)
        self.P3_1 = nn.Conv2d(c3, dim, 1)
        self.P3_2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = feats
        p5 = self.P5_1(c5)
        p4 = self.P4_1(c4) + F.interpolate(p5, size=c4.shape[-2:])  # nearest, as F.interpolate's default
        p3 = self.P3_1(c3) + F.interpolate(p4, size=c3.shape[-2:])
        p6 = self.P6(c5)
        p7 = self.P7_2(F.relu(p6))
        if self.four_levels:
            # Original: resize_img of [600, 600] (and [608, 608] in GIN) uses only P4-P7.
            return [self.P4_2(p4), self.P5_2(p5), p6, p7]
        return [self.P3_2(p3), self.P4_2(p4), self.P5_2(p5), p6, p7, F.adaptive_avg_pool2d(p7, 1)]
