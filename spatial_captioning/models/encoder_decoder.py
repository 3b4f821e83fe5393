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

    def step(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], src_mask: torch.Tensor | None,
             past_kv: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The newest position only (x: (B, 1, d)); its self-attention sees the cached keys/values of the earlier
        positions and its own. Returns the output and the keys/values including this position."""
        norm_x = self.sublayer[0].norm(x)
        key, value = self.self_attn.project_kv(norm_x, norm_x)
        if past_kv is not None:
            key, value = torch.cat([past_kv[0], key], 2), torch.cat([past_kv[1], value], 2)
        x = x + self.sublayer[0].dropout(self.self_attn.attend(norm_x, key, value, None))
        x = self.sublayer[1](x, lambda y: self.cross_attn.attend(y, *memory_kv, src_mask))
        return self.sublayer[2](x, self.feed_forward), (key, value)


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

    def project_memory(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's cross-attention keys/values of the encoder output, computed once per decoding."""
        return [layer.cross_attn.project_kv(memory, memory) for layer in self.layers]

    def step(self, x: torch.Tensor, memory_kv: list[tuple[torch.Tensor, torch.Tensor]], src_mask: torch.Tensor | None,
             past_kv: list[tuple[torch.Tensor, torch.Tensor]] | None
             ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One new position through every layer with cached self-attention keys/values (see DecoderLayer.step)."""
        new_kv = []
        for i, layer in enumerate(self.layers):
            x, kv = layer.step(x, memory_kv[i], src_mask, None if past_kv is None else past_kv[i])
            new_kv.append(kv)
        return self.norm(x), new_kv


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

    def decode_step(self, memory_kv: list[tuple[torch.Tensor, torch.Tensor]], src_mask: torch.Tensor | None,
                    word: torch.Tensor, past_kv: list[tuple[torch.Tensor, torch.Tensor]] | None
                    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Decoder output (B, 1, d) for the newest word (B,) at the position after the cached ones."""
        embed, position = self.tgt_embed
        start = 0 if past_kv is None else past_kv[0][0].size(2)
        return self.decoder.step(position(embed(word.unsqueeze(1)), start), memory_kv, src_mask, past_kv)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_pe: torch.Tensor | None,
                src_mask: torch.Tensor | None, tgt_mask: torch.Tensor | None) -> torch.Tensor:
        return self.decode(self.encode(src, src_pe, src_mask), src_mask, tgt, tgt_mask)
