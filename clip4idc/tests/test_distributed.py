"""Two CPU processes under torchrun (gloo): all-gathered contrastive loss, DistributedSampler, rank-0 checkpoints."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import CODE, ROOT, clevr_args


@pytest.mark.slow
def test_torchrun_two_processes_gloo(toy_root, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(CODE / "main_task_retrieval.py"), "--do_train", "--epochs", "1", "--batch_size", "32",
           "--batch_size_val", "64", "--lr", "1e-3", "--coef_lr", "1", "--n_display", "1"] + clevr_args(toy_root, out)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(CODE), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / "pytorch_model.bin.0", weights_only=True)
    assert "clip.visual.bef_embedding" in state
    log = (out / "log.txt").read_text()
    assert "Step: 24/24" in log  # 768 sentences, 384 per rank, 16 per rank and step
