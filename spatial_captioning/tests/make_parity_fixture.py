"""Writes fixtures/original_outputs.pt by running the ORIGINAL code on parity_weights.py's weights and inputs.

Not part of the test suite and never run on our own model. Usage (needs a clone of the original repository):

    git clone https://github.com/sidharth5n/Spatial-Image-Captioning /tmp/sic   # HEAD a81104c
    PYTHONPATH=tests python tests/make_parity_fixture.py --original /tmp/sic --out tests/fixtures/original_outputs.pt

It copies the four files the model needs (models/TransformerModel.py, models/layers.py, models/CaptionModel.py,
misc/utils.py) into a temporary directory, applies the one fix the original needs to run at all
(``query.shape(0)`` -> ``query.size(0)`` in MultiHeadedAttention.forward), imports them without the package
``__init__`` (which imports files missing upstream), and records the outputs on the CPU in float64 (the weights and
inputs are the float32 values of parity_weights.py, cast), so that the expected values do not depend on the CPU's
float32 kernels. The beam search keeps its scores in float32 (``.float()`` in the original's CaptionModel), so the
beams' log-probs are float32 roundings of float64 values. It also records ``float32_logprobs_gap``: how far the
original's teacher-forced log-probs computed in float32 lie from its float64 ones on the machine that ran it.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

from parity_weights import BEAM_SETTINGS, CONFIG, SAMPLE_SEED, TRAIN, label_masks, deterministic_state_dict, parity_inputs

FILES = ("models/TransformerModel.py", "models/layers.py", "models/CaptionModel.py", "misc/utils.py")
COMMIT = "a81104c"


def load_original(repo: Path, workdir: Path):
    for name in FILES:
        text = subprocess.run(["git", "-C", str(repo), "show", f"{COMMIT}:{name}"], check=True, capture_output=True,
                              text=True).stdout
        if name == "models/layers.py":
            assert text.count("query.shape(0)") == 1
            text = text.replace("query.shape(0)", "query.size(0)")  # the crash fix
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    (workdir / "misc" / "__init__.py").write_text("")
    for pkg in ("models", "misc"):
        module = types.ModuleType(pkg)
        module.__path__ = [str(workdir / pkg)]
        sys.modules[pkg] = module
    sys.path.insert(0, str(workdir))
    from models.TransformerModel import TransformerModel
    return TransformerModel


def build(model_cls, dtype: torch.dtype):
    model = model_cls(argparse.Namespace(**CONFIG)).to(dtype)
    model.load_state_dict(deterministic_state_dict(model.state_dict()), strict=True)
    return model.eval()


def train_steps(model_cls, feats, masks, box_vec, labels, sample_seq, sample_logprobs) -> dict:
    """The criteria, and a few XE updates in train mode (dropout 0.5 on, seeded) with the Noam Adam and the
    element-wise gradient clamp, as the original's train.py does them."""
    from misc import utils
    lab_masks = label_masks(labels)
    out = {}
    model = build(model_cls, torch.float64)
    with torch.no_grad():
        logprobs = model(feats, labels, masks, box_vec)
        out["xe_loss"] = utils.LanguageModelCriterion()(logprobs, labels[:, 1:], lab_masks[:, 1:])
        out["smoothed_loss"] = utils.LabelSmoothing(CONFIG["vocab_size"], TRAIN["label_smoothing"])(
            logprobs, labels[:, 1:], lab_masks[:, 1:])
        reward = torch.linspace(-1, 1, sample_seq.size(0))[:, None].expand_as(sample_seq)
        out["reward_loss"] = utils.RewardCriterion()(sample_logprobs, sample_seq, reward)
    model.train()
    optimizer = utils.get_std_opt(model, factor=TRAIN["noam_factor"], warmup=TRAIN["noam_warmup"])
    crit = utils.LanguageModelCriterion()
    torch.manual_seed(TRAIN["seed"])
    losses, rates = [], []
    for _ in range(TRAIN["steps"]):
        optimizer.zero_grad()
        loss = crit(model(feats, labels, masks, box_vec), labels[:, 1:], lab_masks[:, 1:])
        loss.backward()
        utils.clip_gradient(optimizer, TRAIN["grad_clip"])
        optimizer.step()
        losses.append(loss.item())
        rates.append(optimizer._rate)
    model.eval()
    with torch.no_grad():
        out["trained_logprobs"] = model(feats, labels, masks, box_vec)
    out["train_losses"] = torch.tensor(losses, dtype=torch.float64)
    out["train_rates"] = torch.tensor(rates, dtype=torch.float64)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--original", required=True, type=Path, help="git checkout of sidharth5n/Spatial-Image-Captioning")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp())
    try:
        model_cls = load_original(args.original, workdir)
        model = build(model_cls, torch.float64)
        feats, masks, box_vec, labels = parity_inputs(torch.float64)
        out = {"commit": COMMIT, "keys": list(model.state_dict())}
        with torch.no_grad():
            out["logprobs"] = model(feats, labels, masks, box_vec)
            feats32, masks32, box_vec32, _ = parity_inputs(torch.float32)
            logprobs32 = build(model_cls, torch.float32)(feats32, labels, masks32, box_vec32)
            out["float32_logprobs_gap"] = (logprobs32.double() - out["logprobs"]).abs().max().item()
            out["greedy_seq"], out["greedy_logprobs"] = model(feats, masks, box_vec, opt={"sample_max": 1},
                                                              mode="sample")
            out["greedy_constrained_seq"], _ = model(feats, masks, box_vec, mode="sample",
                                                     opt={"sample_max": 1, "decoding_constraint": 1})
            torch.manual_seed(SAMPLE_SEED)
            out["sample_seq"], out["sample_logprobs"] = model(feats, masks, box_vec, mode="sample",
                                                              opt={"sample_max": 0, "temperature": 0.8})
            for name, opt in BEAM_SETTINGS.items():
                out[f"{name}_seq"], out[f"{name}_logprobs"] = model(feats, masks, box_vec, opt=opt, mode="sample")
        out.update(train_steps(model_cls, feats, masks, box_vec, labels, out["sample_seq"], out["sample_logprobs"]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, args.out)
        print(f"wrote {args.out}: " + ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in out.items()
                                                 if isinstance(v, torch.Tensor)))
        print(f"original float32 vs float64 teacher-forced log-probs: {out['float32_logprobs_gap']:.3g}")
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
