"""Deterministic weights and inputs shared by the original-code parity test and the script that produced its values.

``fixtures/original_outputs.pt`` holds the logits of the original DMN code (BCV-Uniandes/DMS 9fa3a3a, models/dmn.py
and models/dpn/, with the SRU of taolei87/sru@43c85ed on its CPU path; torch 2.14 CPU, float64, train mode as the
original evaluated) on exactly these weights and inputs. See the README's "Parity with the original code".

The values are float32 numbers drawn from integers (``torch.randint`` is exact on every CPU; float32 ``torch.randn``
is not: its vectorised path rounds differently from its scalar one under ``ATEN_CPU_CAPABILITY=default``), so both
the float32 and the float64 runs start from bit-identical weights and inputs on any machine.
"""
from __future__ import annotations

import zlib

import torch

RESOLUTION = 2**23
DICT_SIZE = 50
CONFIGS = {  # name -> DMN keyword arguments; dpn92 and the README's widths unless a width is the point
    "readme_low": dict(num_filters=10, lang_layers=3, mix_we=True, high_res=False),
    "readme_high": dict(num_filters=10, lang_layers=3, mix_we=True, high_res=True, upsampling_amplification=32),
    "narrow_no_mix_we": dict(emb_size=24, hid_size=20, mixed_size=16, hid_mixed_size=18, num_filters=3,
                             lang_layers=2, mixed_layers=2, mix_we=False, high_res=False),
}


def unit_noise(shape: tuple[int, ...] | torch.Size, seed: int) -> torch.Tensor:
    """Uniform float32 values of mean 0 and variance 1 (on a 2**-23 grid), the same bits on every CPU."""
    steps = torch.randint(-RESOLUTION, RESOLUTION, tuple(shape), generator=torch.Generator().manual_seed(seed))
    return steps.float() * (3**0.5 / RESOLUTION)


def deterministic_state_dict(reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One tensor per key, seeded by the key's name: the same values whichever code builds the model."""
    out = {}
    for key, value in reference.items():
        if not value.is_floating_point() or value.numel() == 0:
            out[key] = value.clone()
            continue
        noise = unit_noise(value.shape, zlib.crc32(key.encode()))
        leaf = key.rsplit(".", 1)[-1]
        if key.endswith("emb.weight"):
            out[key] = noise
        elif "rnn_lst" in key and leaf == "weight":  # SRU weights are (input, hidden * k)
            out[key] = noise / value.shape[0] ** 0.5
        elif value.dim() >= 2:
            out[key] = noise / value[0].numel() ** 0.5
        elif leaf == "running_var":
            out[key] = 1 + 0.1 * noise.abs()
        elif leaf == "weight":  # BatchNorm scale
            out[key] = 1 + 0.1 * noise
        else:
            out[key] = 0.1 * noise
    return out


def parity_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """One normalised 64 x 96 image and one 5-word query (the original's batch of one)."""
    image = unit_noise((1, 3, 64, 96), 2018)
    words = torch.tensor([[7, 3, 41, 3, 12]])
    return image, words
