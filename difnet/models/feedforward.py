"""Position-wise feed-forward block with its residual and LayerNorm(s)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .lrp import Recorder, RelLinear, add_relprop, clone_relprop


class PositionWiseFeedForward(Recorder):
    """``layer_norm(x + dropout(fc2(dropout_2(relu(fc1(x))))))``.

    With ``two_streams`` a second LayerNorm (``layer_norm1``) serves the segmentation stream of the DIF encoder
    (``stream=1``); the first serves the grid stream and the fused features.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float, *, two_streams: bool = False) -> None:
        super().__init__()
        self.fc1 = RelLinear(d_model, d_ff)
        self.fc2 = RelLinear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout_2 = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d_model)
        if two_streams:
            self.layer_norm1 = nn.LayerNorm(d_model)

    def forward(self, input: torch.Tensor, stream: int = 0) -> torch.Tensor:
        out = self.dropout(self.fc2(self.dropout_2(F.relu(self.fc1(input)))))
        self.record(input=input, out=out)
        norm = self.layer_norm1 if stream == 1 else self.layer_norm
        return norm(input + out)

    def relprop(self, R: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Decoder use only (stream 0): LayerNorm, dropout and ReLU pass relevance through."""
        input = self.saved("input")
        R_res, R_ff = add_relprop(input, self.saved("out"), R)
        R_ff = self.fc1.relprop(self.fc2.relprop(R_ff, alpha), alpha)
        return clone_relprop(input, R_res, R_ff)
