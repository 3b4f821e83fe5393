"""Writes fixtures/original_outputs.pt by running the ORIGINAL DMN code on parity_weights.py's weights and inputs.

Not part of the test suite and never run on our model. Usage (needs clones of the original repositories):

    git clone https://github.com/BCV-Uniandes/DMS /tmp/dms      # commit 9fa3a3a
    git clone https://github.com/taolei87/sru /tmp/sru          # commit 43c85ed (the SRU DMS's README pins)
    PYTHONPATH=tests python tests/make_parity_fixture.py --dms /tmp/dms --sru /tmp/sru --out tests/fixtures/original_outputs.pt

(``--dms``/``--sru`` may be any git directory holding those commits, e.g. bare mirrors.)

It copies ``dmn_pytorch/models/`` (DMN and its DPN) and the old SRU's ``cuda_functional.py`` into a temporary
directory and runs them on the CPU in float64 (the float32 deterministic weights and inputs cast up exactly), with
BatchNorm in train mode as the original evaluated; it prints the original's own float32-vs-float64 gap. Patches, all
outside the copied files: stub ``cupy``/``pynvrtc`` modules (the old SRU imports them at module level; its CPU path
uses neither), ``Tensor.cuda`` as a no-op (``generate_spatial_batch`` hard-codes ``.cuda()``), and bilinear
resampling with ``align_corners=True`` (the torch <= 0.3 behaviour the original ran under). ``upsampling_mode`` is
passed as ``"bilinear"``, as the original ``train.py`` does (the class default is the typo ``bilineal``).
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from parity_weights import CONFIGS, DICT_SIZE, deterministic_state_dict, parity_inputs

DMS_COMMIT, SRU_COMMIT = "9fa3a3a", "43c85ed"
MODEL_FILES = ("__init__.py", "dmn.py", "dpn/__init__.py", "dpn/adaptive_avgmax_pool.py", "dpn/dpn_model.py",
               "dpn/model_factory.py")


def git_show(repo: Path, commit: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def install_old_sru(sru_repo: Path, workdir: Path) -> None:
    for name in ("cupy", "cupy.cuda", "pynvrtc", "pynvrtc.compiler"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["cupy"].cuda = sys.modules["cupy.cuda"]
    sys.modules["cupy.cuda"].function = None
    sys.modules["pynvrtc"].compiler = sys.modules["pynvrtc.compiler"]
    sys.modules["pynvrtc.compiler"].Program = None
    path = workdir / "old_sru.py"
    path.write_text(git_show(sru_repo, SRU_COMMIT, "cuda_functional.py"))
    spec = importlib.util.spec_from_file_location("sru", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sru"] = module  # the original does ``from sru import SRU``
    spec.loader.exec_module(module)


def torch_03_resampling() -> None:
    interpolate = F.interpolate

    def aligned(input, size=None, scale_factor=None, mode="nearest", align_corners=None, **kwargs):
        return interpolate(input, size, scale_factor, mode, True if mode == "bilinear" else align_corners, **kwargs)

    class Upsample(nn.Module):
        def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
            super().__init__()
            self.size, self.scale_factor, self.mode = size, scale_factor, mode

        def forward(self, x):
            return aligned(x, self.size, self.scale_factor, self.mode)

    F.interpolate = F.upsample = aligned
    nn.Upsample = Upsample


def load_original_dmn(dms_repo: Path, workdir: Path):
    for name in MODEL_FILES:
        target = workdir / "orig_models" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(git_show(dms_repo, DMS_COMMIT, f"dmn_pytorch/models/{name}"))
    sys.path.insert(0, str(workdir))
    from orig_models.dmn import DMN
    return DMN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dms", required=True, type=Path, help="git clone of BCV-Uniandes/DMS")
    parser.add_argument("--sru", required=True, type=Path, help="git clone of taolei87/sru")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp())
    install_old_sru(args.sru, workdir)
    torch_03_resampling()
    torch.Tensor.cuda = lambda self, *a, **k: self
    original_dmn = load_original_dmn(args.dms, workdir)
    image, words = parity_inputs()
    outputs = {}
    for name, kwargs in CONFIGS.items():
        extra = {"upsampling_mode": "bilinear"} if kwargs.get("high_res") else {}
        net = original_dmn(DICT_SIZE, pretrained=False, **extra, **kwargs)
        # nn.Module's loader: the original's own load_state_dict silently skips mismatching keys
        nn.Module.load_state_dict(net, deterministic_state_dict(net.state_dict()), strict=True)
        net.train()
        with torch.no_grad():
            logits32 = net(image, words)
            logits64 = net.double()(image.double(), words)
        outputs[name] = {"logits": logits64.clone(), "keys": list(net.state_dict())}
        gap = float((logits32.double() - logits64).abs().max())
        print(f"{name}: shape {tuple(logits64.shape)}, max |logit| {float(logits64.abs().max()):.3f}, "
              f"original float32 vs float64 max |diff| {gap:.2e}")
    torch.save(outputs, args.out)


if __name__ == "__main__":
    main()
