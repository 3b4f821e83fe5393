"""Dual Path Networks (Chen et al., 2017) as DMN's visual module.

Module and parameter names follow rwightman/pytorch-dpn-pretrained (and timm), so the ImageNet checkpoints
(`dpn92_extra-b040e4a9b.pth`) and DMN's released weights load with ``strict=True``. The classifier is left out:
DMN only uses the feature maps.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

# File names of the ImageNet weights the original asked for (data.lip6.fr/cadene/pretrainedmodels/).
PRETRAINED_FILES: dict[str, str] = {
    "dpn68": "dpn68-66bebafa7.pth",
    "dpn68b": "dpn68b_extra-84854c156.pth",
    "dpn92": "dpn92_extra-b040e4a9b.pth",
    "dpn98": "dpn98-5b90dec4d.pth",
    "dpn131": "dpn131-71dfe43e0.pth",
    "dpn107": "dpn107_extra-1ac7121e2.pth",
}
PRETRAINED_URL = "http://data.lip6.fr/cadene/pretrainedmodels/"


@dataclass(frozen=True)
class DPNConfig:
    num_init_features: int
    k_r: int
    groups: int
    k_sec: tuple[int, int, int, int]
    inc_sec: tuple[int, int, int, int]
    small: bool = False
    b: bool = False


CONFIGS: dict[str, DPNConfig] = {
    "dpn68": DPNConfig(10, 128, 32, (3, 4, 12, 3), (16, 32, 32, 64), small=True),
    "dpn68b": DPNConfig(10, 128, 32, (3, 4, 12, 3), (16, 32, 32, 64), small=True, b=True),
    "dpn92": DPNConfig(64, 96, 32, (3, 4, 20, 3), (16, 32, 24, 128)),
    "dpn98": DPNConfig(96, 160, 40, (3, 6, 20, 3), (16, 32, 32, 128)),
    "dpn131": DPNConfig(128, 160, 40, (4, 8, 28, 3), (16, 32, 32, 128)),
    "dpn107": DPNConfig(128, 200, 50, (4, 8, 20, 3), (20, 64, 64, 128)),
    # Not in the original: a narrow, shallow DPN for CPU tests and toy runs (same block types, ~0.2M parameters).
    "dpn_toy": DPNConfig(16, 16, 4, (1, 1, 1, 1), (8, 8, 8, 16), small=True),
}


class CatBnAct(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=0.001)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = torch.cat(x, dim=1) if isinstance(x, tuple) else x
        return self.act(self.bn(x))


class BnActConv2d(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int = 0, groups: int = 1):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_chs, eps=0.001)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.bn(x)))


class InputBlock(nn.Module):
    """Stem: conv, BN, ReLU, max-pool. Also returns the conv output before BN (DMN's /2 feature)."""

    def __init__(self, num_init_features: int, kernel_size: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(3, num_init_features, kernel_size, stride=2, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(num_init_features, eps=0.001)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.conv(x)
        # Original runs the stem conv a second time for the main path (same result, double cost); kept for fidelity.
        x = self.conv(x)
        return self.pool(self.act(self.bn(x))), feature


class DualPathBlock(nn.Module):
    def __init__(self, in_chs: int, num_1x1_a: int, num_3x3_b: int, num_1x1_c: int, inc: int, groups: int,
                 block_type: str = "normal", b: bool = False):
        super().__init__()
        self.num_1x1_c = num_1x1_c
        self.b = b
        self.key_stride = 2 if block_type == "down" else 1
        self.has_proj = block_type in ("proj", "down")
        if self.has_proj:
            # Attribute names carry the stride so checkpoint keys match the converted MXNet weights.
            proj = BnActConv2d(in_chs, num_1x1_c + 2 * inc, kernel_size=1, stride=self.key_stride)
            if self.key_stride == 2:
                self.c1x1_w_s2 = proj
            else:
                self.c1x1_w_s1 = proj
        self.c1x1_a = BnActConv2d(in_chs, num_1x1_a, kernel_size=1, stride=1)
        self.c3x3_b = BnActConv2d(num_1x1_a, num_3x3_b, kernel_size=3, stride=self.key_stride, padding=1, groups=groups)
        if b:
            self.c1x1_c = CatBnAct(num_3x3_b)
            self.c1x1_c1 = nn.Conv2d(num_3x3_b, num_1x1_c, kernel_size=1, bias=False)
            self.c1x1_c2 = nn.Conv2d(num_3x3_b, inc, kernel_size=1, bias=False)
        else:
            self.c1x1_c = BnActConv2d(num_3x3_b, num_1x1_c + inc, kernel_size=1, stride=1)

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x_in = torch.cat(x, dim=1) if isinstance(x, tuple) else x
        if self.has_proj:
            proj = self.c1x1_w_s2 if self.key_stride == 2 else self.c1x1_w_s1
            x_s = proj(x_in)
            x_s1, x_s2 = x_s[:, : self.num_1x1_c], x_s[:, self.num_1x1_c :]
        else:
            x_s1, x_s2 = x
        x_in = self.c3x3_b(self.c1x1_a(x_in))
        if self.b:
            x_in = self.c1x1_c(x_in)
            out1, out2 = self.c1x1_c1(x_in), self.c1x1_c2(x_in)
        else:
            x_in = self.c1x1_c(x_in)
            out1, out2 = x_in[:, : self.num_1x1_c], x_in[:, self.num_1x1_c :]
        return x_s1 + out1, torch.cat([x_s2, out2], dim=1)


# Blocks after which DMN taps a feature map (concat of residual and dense paths, before any BN).
FEATURE_BLOCKS = ("conv2", "conv3", "conv4", "conv5")


class DPN(nn.Module):
    """DPN trunk returning ``(out, features)``: ``out`` = BN+ReLU of the last block, ``features`` = five maps at
    strides 2, 4, 8, 16, 32 (stem conv, then the last block of each stage)."""

    def __init__(self, cfg: DPNConfig):
        super().__init__()
        bw_factor = 1 if cfg.small else 4
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        kernel, padding = (3, 1) if cfg.small else (7, 3)
        blocks["conv1_1"] = InputBlock(cfg.num_init_features, kernel, padding)
        in_chs = cfg.num_init_features
        self.feature_channels = [cfg.num_init_features]
        self.tap_names: list[str] = []
        for stage, (base_width, depth, inc) in enumerate(zip((64, 128, 256, 512), cfg.k_sec, cfg.inc_sec), start=2):
            bw = base_width * bw_factor
            r = (cfg.k_r * bw) // (64 * bw_factor)
            first_type = "proj" if stage == 2 else "down"
            blocks[f"conv{stage}_1"] = DualPathBlock(in_chs, r, r, bw, inc, cfg.groups, first_type, cfg.b)
            in_chs = bw + 3 * inc
            for i in range(2, depth + 1):
                blocks[f"conv{stage}_{i}"] = DualPathBlock(in_chs, r, r, bw, inc, cfg.groups, "normal", cfg.b)
                in_chs += inc
            self.tap_names.append(f"conv{stage}_{depth}")
            self.feature_channels.append(in_chs)
        blocks["conv5_bn_ac"] = CatBnAct(in_chs)
        self.features = nn.Sequential(blocks)
        self.out_channels = in_chs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features: list[torch.Tensor] = []
        out: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = x
        for name, module in self.features.named_children():
            if name == "conv1_1":
                out, stem = module(out)
                features.append(stem)
                continue
            out = module(out)
            if name in self.tap_names:
                features.append(torch.cat(out, dim=1))
        assert isinstance(out, torch.Tensor)
        return out, features


def create_dpn(name: str) -> DPN:
    if name not in CONFIGS:
        raise ValueError(f"unknown --backend {name!r}; choose one of {', '.join(CONFIGS)}")
    return DPN(CONFIGS[name])
