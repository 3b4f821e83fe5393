"""Deterministic weights and inputs shared by the parity test and the script that produced its expected values.

The expected outputs in ``fixtures/original_outputs.pt`` were computed by ``make_parity_fixture.py``, running the
original DIFNet code (mrwu-mac/DIFNet 5ef4c9a, torch 2.14 CPU, float64) on exactly these weights and inputs.
They are drawn with ``torch.rand`` only, scaled elementwise: uniform draws are the same bits on every CPU, while
``torch.randn`` takes a vectorized path whose values depend on the CPU's instruction set (ATEN_CPU_CAPABILITY).
"""
from __future__ import annotations

import zlib

import torch

V = 40  # a small vocabulary keeps the weights small; every other size is the paper's
BEAM = {"max_len": 20, "eos": 3, "beam_size": 5}  # beam search as test.py runs it, all 5 beams returned
LRP_TOKENS = 7  # the LRP outputs are of the first item and its first 7 tokens
SQRT3 = 3.0 ** 0.5


def unit_noise(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform noise of mean 0 and variance 1, identical on every CPU."""
    return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * SQRT3


def deterministic_state_dict(reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One tensor per key, seeded by the key's name: same values whichever code builds the model."""
    out = {}
    for key, value in reference.items():
        if not value.is_floating_point() or value.numel() == 0:
            out[key] = value.clone()
            continue
        noise = unit_noise(value.shape, torch.Generator().manual_seed(zlib.crc32(key.encode())))
        if key.endswith("_emb.weight"):
            out[key] = noise
        elif value.dim() >= 2:
            out[key] = noise * (3.0 if key == "decoder.fc.weight" else 1.0) / value.shape[-1] ** 0.5
        elif "norm" in key and key.endswith("weight") or key.endswith(".3.weight") or key.endswith(".4.weight"):
            out[key] = 1 + 0.1 * noise
        else:
            out[key] = 0.1 * noise
    return out


def parity_inputs(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grid (2, 49, 2048), segmentation (2, 133, 7, 7) (drawn in float64, returned in ``dtype``) and tokens (2, 9)
    with <bos>=2, <eos>=3, <pad>=1."""
    g = torch.Generator().manual_seed(1234)
    grid = torch.relu(unit_noise((2, 49, 2048), g, torch.float64))
    seg = torch.rand(2, 133, 7, 7, generator=g, dtype=torch.float64)
    seg = seg / seg.sum(1, keepdim=True)
    seq = torch.tensor([[2, 7, 12, 5, 30, 9, 21, 3, 1], [2, 4, 4, 18, 39, 3, 1, 1, 1]])
    return grid.to(dtype), seg.to(dtype), seq
