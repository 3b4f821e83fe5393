"""Visual backbones: ResNet-50 + FPN (ZSGNet) and ResNet-50 + AFS + GARAN + FPN (GIN), and the fusion with language."""
from __future__ import annotations

import torch
from torch import nn

from .afs import AdaptiveFeatureSelection
from .anchors import create_grid
from .fpn import FPN
from .garan import GaranAttention
from .resnet import ResNet


def tile_language_and_grid(feat: torch.Tensor, lang: torch.Tensor) -> torch.Tensor:
    """Concatenate the language vector tiled over space and the (y, x) cell-centre grid: C + L + 2 channels."""
    b, _, h, w = feat.shape
    grid = create_grid(h, w).to(feat).permute(2, 0, 1).expand(b, 2, h, w)
    return torch.cat([feat, lang[:, :, None, None].expand(b, lang.shape[1], h, w), grid], dim=1)


class RetinaBackBone(nn.Module):
    """ResNet C3-C5 -> FPN (ZSGNet) or -> AFS + GARAN per stage -> FPN (GIN); returns fused levels and attention maps."""

    def __init__(self, encoder: ResNet, *, gin: bool, lang_dim: int, fpn_dim: int = 256, afs_hidden: int = 256,
                 afs_out: int = 512, garan_heads: int = 2, four_levels: bool = False, do_norm: bool = False) -> None:
        super().__init__()
        self.gin = gin
        self.do_norm = do_norm
        self.encoder = encoder
        chs = encoder.out_channels
        self.fpn = FPN([afs_out] * 3 if gin else chs, fpn_dim, four_levels)
        if gin:
            self.afs_stage0 = AdaptiveFeatureSelection(0, chs, lang_dim, afs_hidden, afs_out)
            self.afs_stage1 = AdaptiveFeatureSelection(1, chs, lang_dim, afs_hidden, afs_out)
            self.afs_stage2 = AdaptiveFeatureSelection(2, chs, lang_dim, afs_hidden, afs_out)
            self.garan_stage0 = GaranAttention(lang_dim, afs_out, garan_heads)
            self.garan_stage1 = GaranAttention(lang_dim, afs_out, garan_heads)
            self.garan_stage2 = GaranAttention(lang_dim, afs_out, garan_heads)

    def encode_feats(self, img: torch.Tensor, lang: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        feats = self.encoder(img)
        if not self.gin:
            return self.fpn(feats), []
        stages, att_maps = [], []
        for afs, garan in ((self.afs_stage0, self.garan_stage0), (self.afs_stage1, self.garan_stage1),
                           (self.afs_stage2, self.garan_stage2)):
            out, att = garan(lang, afs(lang, feats))
            stages.append(out)
            att_maps.append(att)
        return self.fpn(stages), att_maps

    def forward(self, img: torch.Tensor, lang: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        feats, att_maps = self.encode_feats(img, lang)
        if self.do_norm:
            feats = [f / f.norm(dim=1, keepdim=True) for f in feats]
            lang = lang / lang.norm(dim=1, keepdim=True)
        return [tile_language_and_grid(f, lang) for f in feats], att_maps
