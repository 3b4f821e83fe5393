"""Deterministic small weights and inputs shared by the parity test and the script that produced its expected values.

``fixtures/original_outputs.pt`` holds what the original code (sidharth5n/Spatial-Image-Captioning a81104c, its
``query.shape(0)`` crash fixed, torch 2.14 CPU, in float64) computed on exactly these weights and inputs
(``make_parity_fixture.py``; the README says how it was run).
"""
from __future__ import annotations

import math
import zlib

import torch

# A small model of the README's kind: grid encoding (gxg, 12x12) on, X-Linear cross attention, caption length 16.
CONFIG = dict(vocab_size=30, seq_length=16, num_layers=2, input_encoding_size=64, ff_size=128, heads=8,
              img_feat_size=48, dropout=0.5, use_grid=True, num_grids=144, enc_pos_embedding=True,
              enc_pos_type="gxg", cross_attn="xlinear", norm="layer", ff_activation="RELU")
TRAIN = dict(seed=11, steps=3, noam_factor=0.02, noam_warmup=2, grad_clip=0.1, label_smoothing=0.2)
SAMPLE_SEED = 7  # torch.manual_seed before multinomial sampling (temperature 0.8)
BEAM_SETTINGS = {"beam3": dict(beam_size=3), "diverse4x2": dict(beam_size=4, group_size=2, diversity_lambda=0.5),
                 "beam3_maxppl": dict(beam_size=3, max_ppl=1)}


def sinusoid_table(shape: torch.Size) -> torch.Tensor:
    """The fixed positional table (1, length, d) in float64: built in float32 its sin/cos values depend on the CPU's
    vector kernels (they moved log-probs by 2e-6 under ATEN_CPU_CAPABILITY=default), so both codes load this one."""
    _, length, d_model = shape
    position = torch.arange(length, dtype=torch.float64)[:, None]
    angle = position * torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * -(math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return table[None]


def deterministic_state_dict(reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One tensor per key, seeded by the key's name, so any code with the same keys gets the same weights."""
    out = {}
    for key, value in reference.items():
        if key.endswith(".pe"):
            out[key] = sinusoid_table(value.shape)
            continue
        if not value.is_floating_point():
            out[key] = value.clone()  # integer buffers stay as built
            continue
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        # float64 draws: the float32 normal sampler has a vectorised path whose values change with the CPU capability.
        noise = torch.randn(value.shape, generator=g, dtype=torch.float64)
        if value.dim() >= 2:
            scale = 3.0 if key == "model.generator.proj.weight" else 1.0
            out[key] = noise * scale / value.shape[-1] ** 0.5
        elif key.endswith("weight"):  # LayerNorm / GroupNorm gains
            out[key] = 1 + 0.1 * noise
        else:
            out[key] = 0.1 * noise
    # Favour the last word (UNK) so greedy decoding emits it and beam search's UNK penalty changes the beams.
    out["model.generator.proj.bias"][-1] = 2.5
    return out


def parity_inputs(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(att_feats (3,6,48), att_masks (3,6), box_vec (3,6,144), labels (3,18)); image 1 has 4 boxes, image 2 has 5.

    The values are drawn in float32 and then cast, so both precisions see exactly the same numbers."""
    g = torch.Generator().manual_seed(1234)
    feats = torch.rand(3, 6, CONFIG["img_feat_size"], generator=g) * 2
    masks = torch.ones(3, 6)
    masks[1, 4:] = 0
    masks[2, 5:] = 0
    box_vec = torch.rand(3, 6, CONFIG["num_grids"], generator=g) * (torch.rand(3, 6, 144, generator=g) > 0.6)
    feats, box_vec = feats * masks[..., None], box_vec * masks[..., None]
    labels = torch.zeros(3, CONFIG["seq_length"] + 2, dtype=torch.long)
    for row, length in enumerate((16, 9, 5)):
        labels[row, 1:length + 1] = torch.randint(1, CONFIG["vocab_size"] + 1, (length,), generator=g)
    return feats.to(dtype), masks.to(dtype), box_vec.to(dtype), labels


def label_masks(labels: torch.Tensor) -> torch.Tensor:
    """(N, T+2) float over BOS + words + first EOS, as the data loader builds them."""
    lengths = (labels > 0).sum(1) + 2
    return (torch.arange(labels.size(1))[None] < lengths[:, None]).float()
