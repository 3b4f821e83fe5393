"""GARAN (Global Attentive ReAsoNing): collect a language-queried global vector, diffuse it back over the map."""
from __future__ import annotations

import math

import torch
from torch import nn


class GaranAttention(nn.Module):
    """Returns the refined map (BN(diffused + input) -> LeakyReLU) and the collect logits averaged over heads (B x H x W)."""

    def __init__(self, d_q: int, d_v: int, n_head: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_head = n_head
        self.d_head = d_v // n_head
        self.temperature = math.sqrt(self.d_head)
        self.w_qs = nn.Linear(d_q, d_v)
        self.w_kc = nn.Conv2d(d_v, d_v, 1)
        self.w_kd = nn.Conv2d(d_v, d_v, 1)
        self.w_vs = nn.Conv2d(d_v, d_v, 1)
        nn.init.normal_(self.w_qs.weight, mean=0, std=math.sqrt(2.0 / (d_q + d_v)))
        for conv in (self.w_kc, self.w_kd, self.w_vs):
            nn.init.normal_(conv.weight, mean=0, std=math.sqrt(2.0 / (d_v + self.d_head)))
        self.dropout_c = nn.Dropout(dropout)
        self.dropout_d = nn.Dropout(dropout)
        self.layer_norm = nn.BatchNorm2d(d_v)
        self.layer_acti = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, lang: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = v.shape
        n, d = self.n_head, self.d_head
        q = self.w_qs(lang).view(b, n, 1, d)
        kc = self.w_kc(v).view(b, n, d, h * w).transpose(2, 3)  # B x n x HW x d
        kd = self.w_kd(v).view(b, n, d, h * w).transpose(2, 3)
        vs = self.w_vs(v).view(b, n, d, h * w).transpose(2, 3)

        logits = q @ kc.transpose(2, 3) / self.temperature  # B x n x 1 x HW
        collect = self.dropout_c(torch.softmax(logits, dim=-1))
        pooled = collect @ vs  # B x n x 1 x d
        diffuse = self.dropout_d(torch.sigmoid(kd @ q.transpose(2, 3) / self.temperature))  # B x n x HW x 1
        out = diffuse @ pooled  # B x n x HW x d
        # Original quirk kept: the map is permuted to (..., d, W, H) before being viewed as (H, W), so the diffused
        # map is spatially transposed relative to the input (harmless only because inputs are square).
        out = out.view(b, n, h, w, d).permute(0, 1, 4, 3, 2).reshape(b, n * d, h, w)
        out = self.layer_acti(self.layer_norm(out + v))
        return out, logits.view(b, n, h, w).mean(1)
