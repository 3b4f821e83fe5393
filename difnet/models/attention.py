"""Scaled dot-product and multi-head attention of M² as used by DIFNet (memory slots and meshing unused)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .containers import StatefulModule
from .lrp import Recorder, RelLinear, add_relprop, clone_relprop, matmul_relprop


class ScaledDotProductAttention(Recorder):
    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, dropout: float, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused  # torch's scaled_dot_product_attention instead of the explicit softmax(QK^T/sqrt(d))V
        self.fc_q = RelLinear(d_model, h * d_k)
        self.fc_k = RelLinear(d_model, h * d_k)
        self.fc_v = RelLinear(d_model, h * d_v)
        self.fc_o = RelLinear(h * d_v, d_model)
        self.dropout = nn.Dropout(dropout)
        self.d_k, self.d_v, self.h = d_k, d_v, h
        for fc in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.constant_(fc.bias, 0)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """queries (b, nq, d), keys/values (b, nk, d); attention_mask broadcastable to (b, h, nq, nk), True = masked."""
        return self.attend(queries, *self.project_keys_values(keys, values), attention_mask)

    def project_keys_values(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, nk, h * d_k) keys and (b, nk, h * d_v) values, as ``attend`` takes them (and decoding caches them)."""
        return self.fc_k(keys), self.fc_v(values)

    def attend(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of the (un-projected) queries over already projected keys and values."""
        b_s, nq = queries.shape[:2]
        nk = keys.shape[1]
        q = self.fc_q(queries).view(b_s, nq, self.h, self.d_k).permute(0, 2, 1, 3)  # (b, h, nq, d_k)
        k = keys.view(b_s, nk, self.h, self.d_k).permute(0, 2, 3, 1)  # (b, h, d_k, nk)
        v = values.view(b_s, nk, self.h, self.d_v).permute(0, 2, 1, 3)  # (b, h, nk, d_v)
        if self.fused and not self.recording:
            mask = None if attention_mask is None else ~attention_mask
            dropout_p = self.dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k.transpose(-1, -2), v, attn_mask=mask, dropout_p=dropout_p)
        else:
            att = torch.matmul(q, k) / math.sqrt(self.d_k)
            if attention_mask is not None:
                att = att.masked_fill(attention_mask, float("-inf"))
            att = self.dropout(torch.softmax(att, -1))
            self.record(q=q, k_t=k, att=att, v=v)
            out = torch.matmul(att, v)
        out = out.permute(0, 2, 1, 3).contiguous().view(b_s, nq, self.h * self.d_v)
        return self.fc_o(out)

    def relprop(self, R: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b_s, nq = R.shape[:2]
        R = self.fc_o.relprop(R, alpha).view(b_s, nq, self.h, self.d_v).permute(0, 2, 1, 3)
        R_att, R_v = matmul_relprop(self.saved("att"), self.saved("v"), R)
        # the original halves relevance between attention weights and values, then between queries and keys
        R_att, R_v = R_att / 2, R_v / 2
        R_q, R_k_t = matmul_relprop(self.saved("q"), self.saved("k_t"), R_att)  # softmax and dropout pass R through
        R_q, R_k = R_q / 2, R_k_t.transpose(-1, -2) / 2
        nk = R_k.shape[2]
        R_q = self.fc_q.relprop(R_q.permute(0, 2, 1, 3).reshape(b_s, nq, self.h * self.d_k), alpha)
        R_k = self.fc_k.relprop(R_k.permute(0, 2, 1, 3).reshape(b_s, nk, self.h * self.d_k), alpha)
        R_v = self.fc_v.relprop(R_v.permute(0, 2, 1, 3).reshape(b_s, nk, self.h * self.d_v), alpha)
        return R_q, R_k, R_v


class MultiHeadAttention(StatefulModule, Recorder):
    """``layer_norm(queries + dropout(attention(queries, keys, values)))``.

    While decoding step by step, the decoder's self-attention (``can_be_stateful``) keeps the keys and values of
    the prefix, and its cross-attention (``caches_memory``) projects the encoder output once per sequence.
    Relevance propagation needs a teacher-forced forward pass, never a decoding step, so it is unaffected.
    """

    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, dropout: float, *, can_be_stateful: bool = False,
                 caches_memory: bool = False, spare_norm: bool = False, fused: bool = False) -> None:
        super().__init__()
        self.attention = ScaledDotProductAttention(d_model, d_k, d_v, h, dropout, fused)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d_model)
        if spare_norm:
            # mode `difnet` builds a second LayerNorm that no call ever selects (the stream flag is never passed)
            self.layer_norm1 = nn.LayerNorm(d_model)
        self.can_be_stateful = can_be_stateful
        if can_be_stateful:
            self.register_state("running_keys", torch.zeros((0, d_model)))
            self.register_state("running_values", torch.zeros((0, d_model)))
        self.caches_memory = caches_memory
        if caches_memory:  # not in the original's state dict
            self.register_state("memory_keys", torch.zeros((0, h * d_k)), persistent=False, beam_shared=True)
            self.register_state("memory_values", torch.zeros((0, h * d_v)), persistent=False, beam_shared=True)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.is_stateful and self.caches_projections and (self.can_be_stateful or self.caches_memory):
            out = self._cached_attention(queries, keys, values, attention_mask)
        else:
            if self.can_be_stateful and self.is_stateful:
                # M² caches the un-projected inputs and re-projects the whole prefix at every step
                self.running_keys = torch.cat([self.running_keys, keys], 1)
                keys = self.running_keys
                self.running_values = torch.cat([self.running_values, values], 1)
                values = self.running_values
            out = self.attention(queries, keys, values, attention_mask)
        out = self.dropout(out)
        self.record(queries=queries, out=out)
        return self.layer_norm(queries + out)

    def _cached_attention(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                          attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.can_be_stateful:  # self-attention: project this step's position only, append it to the prefix
            k, v = self.attention.project_keys_values(keys, values)
            self.running_keys = torch.cat([self.running_keys, k], 1)
            self.running_values = torch.cat([self.running_values, v], 1)
            return self.attention.attend(queries, self.running_keys, self.running_values, attention_mask)
        if self.memory_keys.shape[1] == 0:  # cross-attention: the encoder output is projected at the first step
            self.memory_keys, self.memory_values = self.attention.project_keys_values(keys, values)
        return self.attention.attend(queries, self.memory_keys, self.memory_values, attention_mask)

    def relprop(self, R: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        queries = self.saved("queries")
        R_res, R_att = add_relprop(queries, self.saved("out"), R)
        R_q, R_k, R_v = self.attention.relprop(R_att, alpha)
        return clone_relprop(queries, R_res, R_q), R_k, R_v
