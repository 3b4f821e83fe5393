"""Scaled dot-product multi-head attention and the X-Linear bilinear attention block (Pan et al., CVPR 2020)."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

# Masked logits get this value before the softmax (the original's masked_fill(mask == 0, -1e9)).
MASK_FILL = -1e9


def clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


def scaled_dot_product(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       mask: torch.Tensor | None, dropout: nn.Module | None) -> torch.Tensor:
    """(B,H,Q,d) x (B,H,K,d) -> (B,H,Q,d); ``mask`` broadcasts to (B,H,Q,K), 0 = hidden."""
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(query.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask == 0, MASK_FILL)
    probs = F.softmax(scores, dim=-1)
    if dropout is not None:
        probs = dropout(probs)
    return torch.matmul(probs, value)


class MultiHeadedAttention(nn.Module):
    """Four Linear(d,d) maps (query, key, value, output); dropout on the attention probabilities."""

    def __init__(self, heads: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.d_k = d_model // heads
        self.heads = heads
        self.linears = clones(nn.Linear(d_model, d_model), 4)
        self.dropout = nn.Dropout(p=dropout)

    def _heads(self, linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> (B, heads, L, d_k)."""
        return linear(x).view(x.size(0), -1, self.heads, self.d_k).transpose(1, 2)

    def project_kv(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values split into heads; a decoder caches them instead of re-projecting past positions."""
        return self._heads(self.linears[1], key), self._heads(self.linears[2], value)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        """``query`` (B, Q, d_model) against projected ``key``/``value`` (B or 1, heads, K, d_k)."""
        if mask is not None:
            mask = mask.unsqueeze(1)  # same mask for every head
        batch = query.size(0)  # the original wrote query.shape(0), a TypeError on every call
        x = scaled_dot_product(self._heads(self.linears[0], query), key, value, mask, self.dropout)
        x = x.transpose(1, 2).contiguous().view(batch, -1, self.heads * self.d_k)
        return self.linears[-1](x)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(query, *self.project_kv(key, value), mask)


class XLinearPooling(nn.Module):
    """Spatial + channel attention over bilinear query-key features (the original's ``Attention``)."""

    def __init__(self, embed_dim: int, mid_dim: int | None, dropout: float):
        super().__init__()
        mid_dim = mid_dim or embed_dim // 2
        self.embed = nn.Sequential(nn.Linear(embed_dim, mid_dim), nn.ReLU(), nn.Dropout(dropout))
        self.spatial = nn.Linear(mid_dim, 1)
        self.squeeze = nn.Sequential(nn.Linear(mid_dim, embed_dim), nn.Sigmoid())

    def forward(self, query1: torch.Tensor, key: torch.Tensor, query2: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """Inputs (B,H,Q,D) / (B,H,K,D); mask broadcasts to (B,H,Q,K). Returns (B,H,Q,D)."""
        # E_ij = Dropout(ReLU(W (q1_i * k_j))): the ReLU forces the (Q,K,D) bilinear map here.
        key_map = self.embed(query1.unsqueeze(-2) * key.unsqueeze(-3))  # (B,H,Q,K,mid)
        logits = self.spatial(key_map).squeeze(-1)
        if mask is not None:
            logits = logits.masked_fill(mask == 0, MASK_FILL)
        alpha = F.softmax(logits, dim=-1)
        if mask is not None:
            weights = mask.unsqueeze(-1).to(key_map.dtype)
            pooled = (key_map * weights).sum(-2) / weights.sum(-2)  # mean over valid keys only
        else:
            pooled = key_map.mean(-2)
        channel = self.squeeze(pooled)
        # sum_j alpha_ij (q2_i * v_j) == q2_i * (sum_j alpha_ij v_j): same output as the original's
        # (B,H,Q,K,D) value map, without materialising it.
        return query2 * torch.matmul(alpha, value) * channel


class XLinearMultiHeadedAttention(nn.Module):
    """X-Linear cross attention; built with one head in this model (the original passes heads=1 for xlinear).

    No output projection and no dropout on the attention weights, as in the original.
    """

    def __init__(self, heads: int, d_model: int, mid_dim: int | None = None, dropout: float = 0.1):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.d_k = d_model // heads
        self.heads = heads
        branch = nn.Sequential(nn.Linear(d_model, d_model), nn.CELU(), nn.GroupNorm(heads, d_model))
        self.linears = clones(branch, 4)
        self.attention = XLinearPooling(self.d_k, mid_dim, dropout)

    def _heads(self, branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> (B, heads, L, d_k); GroupNorm sees one (N, d_model) row per token, as in the
        original's x.view(-1, d)."""
        return branch(x.reshape(-1, x.size(-1))).view(x.size(0), -1, self.heads, self.d_k).transpose(1, 2)

    def project_kv(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The key and value branches; a decoder computes them once per image instead of once per step."""
        return self._heads(self.linears[1], key), self._heads(self.linears[3], value)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        """``query`` (B, Q, d_model) against projected ``key``/``value`` (B or 1, heads, K, d_k)."""
        if mask is not None:
            mask = mask.unsqueeze(1)
        q1, q2 = self._heads(self.linears[0], query), self._heads(self.linears[2], query)
        x = self.attention(q1, key, q2, value, mask)
        return x.transpose(1, 2).contiguous().view(query.size(0), -1, self.heads * self.d_k)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(query, *self.project_kv(key, value), mask)
