"""Deterministic weights and inputs shared by the parity test and the script that produced its expected values.

The expected outputs in ``fixtures/original_outputs.pt`` were computed by running the original DIFNet code
(mrwu-mac/DIFNet 5ef4c9a, torch 2.14 CPU, float32) on exactly these weights and inputs.
"""
from __future__ import annotations

import zlib

import torch

V = 40  # a small vocabulary keeps the weights small; every other size is the paper's


def deterministic_state_dict(reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One tensor per key, seeded by the key's name: same values whichever code builds the model."""
    out = {}
    for key, value in reference.items():
        if not value.is_floating_point() or value.numel() == 0:
            out[key] = value.clone()
            continue
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        noise = torch.randn(value.shape, generator=g)
        if key.endswith("_emb.weight"):
            out[key] = noise
        elif value.dim() >= 2:
            out[key] = noise * (3.0 if key == "decoder.fc.weight" else 1.0) / value.shape[-1] ** 0.5
        elif "norm" in key and key.endswith("weight") or key.endswith(".3.weight") or key.endswith(".4.weight"):
            out[key] = 1 + 0.1 * noise
        else:
            out[key] = 0.1 * noise
    return out


def parity_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grid (2, 49, 2048), segmentation (2, 133, 7, 7), tokens (2, 9) with <bos>=2, <eos>=3, <pad>=1."""
    g = torch.Generator().manual_seed(1234)
    grid = torch.relu(torch.randn(2, 49, 2048, generator=g))
    seg = torch.rand(2, 133, 7, 7, generator=g)
    seg = seg / seg.sum(1, keepdim=True)
    seq = torch.tensor([[2, 7, 12, 5, 30, 9, 21, 3, 1], [2, 4, 4, 18, 39, 3, 1, 1, 1]])
    return grid, seg, seq
