"""Pre-norm transformer encoder/decoder stacks (Annotated-Transformer layout, as in ORT)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attention import clones


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale only (``--norm RMS``); eps added to the RMS, not inside the root."""

    def __init__(self, d_model: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.d = d_model
        self.scale = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = x.norm(2, dim=-1, keepdim=True) * self.d ** -0.5
        return self.scale * (x / (rms + self.eps))


def make_norm(kind: str, size: int) -> nn.Module:
    return nn.LayerNorm(size) if kind == "layer" else RMSNorm(size)


class SublayerConnection(nn.Module):
    """x + Dropout(sublayer(Norm(x))): the norm comes first (pre-LN), as in the original."""

    def __init__(self, size: int, dropout: float, norm: str = "layer"):
        super().__init__()
        self.norm = make_norm(norm, size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return x + self.dropout(sublayer(self.norm(x)))


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1, activation: str = "RELU"):
        super().__init__()
        act = nn.ReLU() if activation == "RELU" else nn.GELU()
        self.fc = nn.Sequential(nn.Linear(d_model, d_ff), act, nn.Dropout(dropout), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class EncoderLayer(nn.Module):
    def __init__(self, size: int, self_attn: nn.Module, feed_forward: nn.Module, norm: str, dropout: float):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.sublayer = clones(SublayerConnection(size, dropout, norm), 2)
        self.size = size

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.sublayer[0](x, lambda y: self.self_attn(y, y, y, mask))
        return self.sublayer[1](x, self.feed_forward)


class Encoder(nn.Module):
    def __init__(self, layer: EncoderLayer, norm: str, n: int):
        super().__init__()
        self.layers = clones(layer, n)
        self.norm = make_norm(norm, layer.size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class DecoderLayer(nn.Module):
    def __init__(self, size: int, self_attn: nn.Module, cross_attn: nn.Module, feed_forward: nn.Module,
                 norm: str, dropout: float):
        super().__init__()
        self.size = size
        self.self_attn = self_attn
        self.cross_attn = cross_attn
        self.feed_forward = feed_forward
        self.sublayer = clones(SublayerConnection(size, dropout, norm), 3)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None,
                tgt_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.sublayer[0](x, lambda y: self.self_attn(y, y, y, tgt_mask))
        x = self.sublayer[1](x, lambda y: self.cross_attn(y, memory, memory, src_mask))
        return self.sublayer[2](x, self.feed_forward)


class Decoder(nn.Module):
    def __init__(self, layer: DecoderLayer, norm: str, n: int):
        super().__init__()
        self.layers = clones(layer, n)
        self.norm = make_norm(norm, layer.size)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None,
                tgt_mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, memory, src_mask, tgt_mask)
        return self.norm(x)


class Generator(nn.Module):
    """Linear to the vocabulary + log_softmax (no weight tying with the word embedding)."""

    def __init__(self, d_model: int, vocab: int):
        super().__init__()
        self.proj = nn.Linear(d_model, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.proj(x), dim=-1)


class EncoderDecoder(nn.Module):
    """encoder, decoder, src_embed (spatial encoding, absent without --use_grid), tgt_embed, generator."""

    def __init__(self, encoder: Encoder, decoder: Decoder, src_embed: nn.Module | None, tgt_embed: nn.Module,
                 generator: Generator):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        if src_embed is not None:
            self.src_embed = src_embed
        self.tgt_embed = tgt_embed
        self.generator = generator

    def encode(self, src: torch.Tensor, src_pe: torch.Tensor | None, src_mask: torch.Tensor | None) -> torch.Tensor:
        # Without --use_grid the original's src_embed is `lambda x, y: x`: grid vectors are ignored.
        if hasattr(self, "src_embed"):
            src = self.src_embed(src, src_pe)
        return self.encoder(src, src_mask)

    def decode(self, memory: torch.Tensor, src_mask: torch.Tensor | None, tgt: torch.Tensor,
               tgt_mask: torch.Tensor | None) -> torch.Tensor:
        return self.decoder(self.tgt_embed(tgt), memory, src_mask, tgt_mask)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_pe: torch.Tensor | None,
                src_mask: torch.Tensor | None, tgt_mask: torch.Tensor | None) -> torch.Tensor:
        return self.decode(self.encode(src, src_pe, src_mask), src_mask, tgt, tgt_mask)
