"""Word embedding, the decoder's sinusoidal positions, and the encoder's spatial (grid) encoding."""
from __future__ import annotations

import math

import torch
from torch import nn


class Embeddings(nn.Module):
    def __init__(self, d_model: int, vocab: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.d_model = d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) * math.sqrt(self.d_model)  # sqrt(d_model) scale of the Annotated Transformer


def sinusoid_table(length: int, d_model: int) -> torch.Tensor:
    """(length, d_model): sin on even, cos on odd dimensions, base 10000."""
    table = torch.zeros(length, d_model)
    position = torch.arange(0, length).unsqueeze(1).float()
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table


class PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, dropout: float, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.register_buffer("pe", sinusoid_table(max_len, d_model).unsqueeze(0))

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``x`` holds positions start, start + 1, ... (start > 0 when a decoder feeds one new position)."""
        return self.dropout(x + self.pe[:, start:start + x.size(1)])


class SpatialPositionalEncoding(nn.Module):
    """Adds where each box lies to its embedded feature.

    ``gxg``: the (K, g*g) grid vector is viewed as (K, g, g) (rows = y, columns = x); its row sums (vertical
    profile) go through fc1 and its column sums (horizontal profile) through fc2, and the feature itself through
    fc3: x = fc3(feat) + fc1(rows) + fc2(cols). ``g2``: feat + fc(vec). ``box-coord``: feat + MLP(box).
    ``learnable=False`` (sinusoid tables): the original's branch references an undefined name and cannot run;
    here it adds row/column profiles times fixed sinusoid tables, the evident intent.
    """

    def __init__(self, grids: int, d_model: int, dropout: float, learnable: bool = True, learnable_type: str = "gxg"):
        super().__init__()
        side = math.isqrt(grids)
        if side * side != grids:
            raise ValueError(f"--num_grids {grids} must be a perfect square (e.g. 144 for a 12x12 grid)")
        if learnable_type not in ("gxg", "g2", "box-coord"):
            raise ValueError(f"--enc_pos_type {learnable_type!r}: expected gxg, g2 or box-coord")
        self.learnable = learnable
        self.kind = learnable_type if learnable else "sinusoid"
        self.grids = side
        self.dropout = nn.Dropout(p=dropout)
        if self.kind == "gxg":
            self.fc1 = nn.Linear(side, d_model)
            self.fc2 = nn.Linear(side, d_model)
            self.fc3 = nn.Linear(d_model, d_model)
        elif self.kind == "g2":
            self.fc = nn.Linear(grids, d_model)
        elif self.kind == "box-coord":
            self.fc = nn.Sequential(nn.Linear(4, d_model // 2), nn.ReLU(), nn.Linear(d_model // 2, d_model))
        else:
            table = sinusoid_table(side, d_model)
            self.register_buffer("pe1", table)
            self.register_buffer("pe2", table.view(side, -1, 2).flip(-1).reshape(side, d_model))  # cos even, sin odd
        if self.kind in ("gxg", "sinusoid"):
            # Unused by the forward pass but saved in the original's checkpoints (rows = 0..g-1, cols = zeros).
            self.register_buffer("rows", torch.arange(side) % side)
            self.register_buffer("cols", torch.arange(side) // side)

    def forward(self, img_feat: torch.Tensor, box_vec: torch.Tensor) -> torch.Tensor:
        if self.kind in ("gxg", "sinusoid"):
            grid = box_vec.view(box_vec.size(0), -1, self.grids, self.grids)
            rows, cols = grid.sum(-1), grid.sum(-2)
            if self.kind == "gxg":
                img_feat = self.fc3(img_feat) + self.fc1(rows) + self.fc2(cols)
            else:
                img_feat = img_feat + rows @ self.pe1 + cols @ self.pe2
        else:
            img_feat = img_feat + self.fc(box_vec)
        return self.dropout(img_feat)
