"""Visual encoders: the plain 3-layer Transformer encoder (modes base*) and the DIF encoder (modes difnet*)."""
from __future__ import annotations

import torch
from torch import nn

from .attention import MultiHeadAttention
from .feedforward import PositionWiseFeedForward


class EncoderLayer(nn.Module):
    """Self-attention block with DIFNet's extra skip connection: the attention output, already Add&Norm-ed
    inside the MHA, goes through a second Add&Norm (``lnorm``) with the layer input (paper eq. 10).

    With ``two_streams`` the layer owns stream-private LayerNorms for the segmentation flow (``lnorm1``,
    ``pwff.layer_norm1``); the attention, its LayerNorm and the FFN are shared by both flows.
    """

    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, d_ff: int, dropout: float, *,
                 two_streams: bool = False, spare_norm: bool = False, fused: bool = False) -> None:
        super().__init__()
        self.mhatt = MultiHeadAttention(d_model, d_k, d_v, h, dropout, spare_norm=spare_norm, fused=fused)
        self.dropout = nn.Dropout(dropout)
        self.lnorm = nn.LayerNorm(d_model)
        if two_streams:
            self.lnorm1 = nn.LayerNorm(d_model)
        self.pwff = PositionWiseFeedForward(d_model, d_ff, dropout, two_streams=two_streams)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, stream: int = 0) -> torch.Tensor:
        att = self.mhatt(x, x, x, attention_mask)
        norm = self.lnorm1 if stream == 1 else self.lnorm
        att = norm(x + self.dropout(att))
        return self.pwff(att, stream)


def padding_mask(features: torch.Tensor, padding_idx: int = 0) -> torch.Tensor:
    """(b, 1, 1, n) True where a feature row sums to ``padding_idx`` (0).

    Computed by the original on the embedded (LayerNorm-ed) features, so in practice no cell is ever masked:
    kept because the released weights were trained that way.
    """
    return (torch.sum(features, -1) == padding_idx).unsqueeze(1).unsqueeze(1)


class TransformerEncoder(nn.Module):
    """Modes base/base_lrp: N layers in sequence over the grid cells."""

    def __init__(self, n_layers: int, d_model: int, d_k: int, d_v: int, h: int, d_ff: int, dropout: float, *,
                 fused: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [EncoderLayer(d_model, d_k, d_v, h, d_ff, dropout, fused=fused) for _ in range(n_layers)])

    def forward(self, grid: torch.Tensor, seg: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = padding_mask(grid)
        out = grid
        for layer in self.layers:
            out = layer(out, mask)
        return out, mask


class DifnetEncoder(nn.Module):
    """Modes difnet/difnet_lrp: the first ``n_fusion`` layers (IILN, Lf=1) run ``n_iters`` (T=2) times on each
    flow separately (grid, then segmentation, alternating), the flows are summed, the remaining layers run on
    the sum, and the output adds both flows back (cross-layer skip): ``f + grid + seg``.
    """

    def __init__(self, n_layers: int, d_model: int, d_k: int, d_v: int, h: int, d_ff: int, dropout: float, *,
                 n_fusion: int = 1, n_iters: int = 2, spare_norm: bool = False, fused: bool = False) -> None:
        super().__init__()
        if not 0 < n_fusion < n_layers:
            raise ValueError(f"the DIF encoder needs 0 < n_fusion ({n_fusion}) < n_layers ({n_layers})")
        # every layer owns the stream-private norms, also the post-fusion layers that never use them (original)
        self.layers = nn.ModuleList(
            [EncoderLayer(d_model, d_k, d_v, h, d_ff, dropout, two_streams=True, spare_norm=spare_norm, fused=fused)
             for _ in range(n_layers)])
        self.n_fusion, self.n_iters = n_fusion, n_iters

    def forward(self, grid: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask, seg_mask = padding_mask(grid), padding_mask(seg)
        for layer in self.layers[: self.n_fusion]:
            for _ in range(self.n_iters):
                grid = layer(grid, mask, stream=0)
                seg = layer(seg, seg_mask, stream=1)
        out = grid + seg
        for layer in self.layers[self.n_fusion:]:
            out = layer(out, mask)
        return out + grid + seg, mask
