"""Writes fixtures/original_outputs.pt by running the ORIGINAL DIFNet code on parity_weights.py's weights and inputs.

Not part of the test suite and never run on our own model. Usage (needs a clone of the original repository):

    git clone https://github.com/mrwu-mac/DIFNet /tmp/difnet   # HEAD 5ef4c9a
    cd difnet && PYTHONPATH=tests python tests/make_parity_fixture.py --original /tmp/difnet \\
        --out tests/fixtures/original_outputs.pt

It extracts the original's ``models/``, ``utils/`` and ``middle.py`` at commit 5ef4c9a into a temporary directory and imports them
unmodified (the model code needs no patch on torch 2.14; the data pipeline is not used). The models are built as
the original's test.py builds them for each mode (paper sizes, vocabulary ``parity_weights.V``), loaded with the
deterministic weights and run on the CPU in float64 (the weights are float32 values, held exactly in float64; the
inputs are drawn in float64). Harness-only steps: the models are converted with ``.double()``;
the LRP outputs are computed as the original's lrp_total.py computes them (top-1 logit per position, one target
position at a time, ``relprop_encode_decode(R, alpha=1)``), on the first item and its first 7 tokens.

Stored per mode: ``logprobs`` (teacher forcing), ``beam_tokens`` and ``beam_logprobs`` (beam 5, 20 words,
out_size 5) and, for the LRP modes, ``inp_lrp`` (7, 49) and ``out_lrp`` (7, 7), all float64. The script also runs
the original in float32 and prints the largest float32-vs-float64 difference of each output (quoted next to the
float32 tolerances in test_parity.py).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import torch

from parity_weights import BEAM, LRP_TOKENS, V, deterministic_state_dict, parity_inputs

COMMIT = "5ef4c9a"
PAD, BOS, MAX_LEN = 1, 2, 54
LRP_MODES = ("base_lrp", "difnet_lrp")


def extract_original(repo: Path, workdir: Path) -> None:
    archive = subprocess.run(["git", "-C", str(repo), "archive", COMMIT, "models", "utils", "middle.py"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(workdir, filter="data")
    sys.path.insert(0, str(workdir))


def build_original(mode: str):
    """The model of ``mode`` exactly as the original's test.py builds it."""
    from models.difnet import Difnet, DifnetDecoder, DifnetEncoder
    from models.difnet_lrp import Difnet_LRP, DifnetEncoder_LRP
    from models.transformer import ScaledDotProductAttention, Transformer, TransformerDecoder, TransformerEncoder
    from models.transformer_lrp import (ScaledDotProductAttention_LRP, Transformer_LRP, TransformerDecoder_LRP,
                                        TransformerEncoder_LRP)

    if mode == "base":
        return Transformer(BOS, TransformerEncoder(3, 0, attention_module=ScaledDotProductAttention),
                           TransformerDecoder(V, MAX_LEN, 3, PAD))
    if mode == "base_lrp":
        return Transformer_LRP(BOS, TransformerEncoder_LRP(3, 0, attention_module=ScaledDotProductAttention_LRP),
                               TransformerDecoder_LRP(V, MAX_LEN, 3, PAD))
    if mode == "difnet":
        return Difnet(BOS, DifnetEncoder(1, 2, 3, 0, attention_module=ScaledDotProductAttention),
                      DifnetDecoder(V, MAX_LEN, 3, PAD))
    return Difnet_LRP(BOS, DifnetEncoder_LRP(3, 0, attention_module=ScaledDotProductAttention_LRP),
                      TransformerDecoder_LRP(V, MAX_LEN, 3, PAD))


def lrp(model, grid: torch.Tensor, seq: torch.Tensor, seg: torch.Tensor) -> dict[str, torch.Tensor]:
    """lrp_total.py's relevance of the 49 encoder cells (inp) and of the previous words (out), per target position."""
    out = model(grid, seq, seg)
    top1 = torch.zeros_like(out).scatter_(2, torch.topk(out, k=1).indices, 1)
    inp, dec = [], []
    for t in range(seq.shape[1]):
        mask = torch.nn.functional.one_hot(torch.tensor(t), out.shape[1])[None, :, None]
        rel = model.relprop_encode_decode(top1 * mask, alpha=1)
        inp.append(rel["emb_inp"].sum(-1)[0].detach())
        dec.append(rel["emb_out"].abs().sum(-1)[0].detach())
    return {"inp_lrp": torch.stack(inp), "out_lrp": torch.stack(dec)}


def run_original(mode: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    model = build_original(mode)
    model.load_state_dict(deterministic_state_dict(model.state_dict()), strict=True)
    model = model.to(dtype).eval()
    grid, seg, seq = parity_inputs(dtype)
    with torch.no_grad():
        result = {"logprobs": model(grid, seq, seg)}
        result["beam_tokens"], result["beam_logprobs"] = model.beam_search(grid, seg, BEAM["max_len"], BEAM["eos"],
                                                                           BEAM["beam_size"], out_size=BEAM["beam_size"])
    if mode in LRP_MODES:
        result.update(lrp(model, grid[:1], seq[:1, :LRP_TOKENS], seg[:1]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="a clone of mrwu-mac/DIFNet")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        extract_original(args.original, Path(tmp))
        for mode in ("base", "base_lrp", "difnet", "difnet_lrp"):
            outputs[mode] = run_original(mode, torch.float64)
            single = run_original(mode, torch.float32)
            for key, value in outputs[mode].items():
                if key == "beam_tokens":
                    print(f"{mode} {key}: float32 equal to float64: {torch.equal(single[key], value)}")
                    continue
                gap = (single[key].double() - value).abs().max().item()
                print(f"{mode} {key}: float32 vs float64 max abs difference {gap:.2e} "
                      f"(largest magnitude {value.abs().max().item():.2e})")
    torch.save(outputs, args.out)


if __name__ == "__main__":
    main()
