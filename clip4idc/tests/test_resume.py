"""--resume_model continues an interrupted run exactly (model, optimizer, epoch, selection and random states), a
rerun never overwrites the checkpoints an earlier run left in --output_dir unless asked (--overwrite), and stage 2
starts from the last checkpoint stage 1 wrote."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import main_task_caption
import main_task_retrieval
from checkpoints import last_checkpoint
from conftest import CODE, ROOT, clevr_args
from modules.build import CheckpointError

TRAIN = ["--do_train", "--epochs", "2", "--batch_size", "64", "--batch_size_val", "64", "--max_words", "8",
         "--lr", "2e-3", "--n_display", "1000"]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(toy_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    main_task_retrieval.main(TRAIN + clevr_args(toy_root, out))
    return out


def test_resume_continues_as_if_the_run_had_not_stopped(toy_root, uninterrupted, tmp_path):
    """A run stopped after epoch 0 (its epoch-0 files copied) and resumed gives the uninterrupted run's epoch-1 model
    bit for bit, and the same per-epoch summary."""
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    for name in ("pytorch_model.bin.0", "pytorch_opt.bin.0"):
        shutil.copy(uninterrupted / name, stopped / name)
    opt = torch.load(stopped / "pytorch_opt.bin.0", weights_only=True)
    assert opt["epoch"] == 0 and {"optimizer_state_dict", "loss"} <= set(opt)  # the original's keys
    summary = main_task_retrieval.main(TRAIN + clevr_args(toy_root, stopped)
                                       + ["--resume_model", str(stopped / "pytorch_opt.bin.0")])
    expected = torch.load(uninterrupted / "pytorch_model.bin.1", weights_only=True)
    resumed = torch.load(stopped / "pytorch_model.bin.1", weights_only=True)
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    before = json.loads((uninterrupted / "results.json").read_text())
    assert [e["train_loss"] for e in summary["epochs"]] == [e["train_loss"] for e in before["epochs"]]
    assert summary["test"] == before["test"]


@pytest.mark.parametrize("script", [main_task_retrieval, main_task_caption])
def test_a_rerun_does_not_overwrite_checkpoints(toy_root, uninterrupted, tmp_path, script):
    """The same command again stops before training, naming the first checkpoint it would replace; nothing changes."""
    out = tmp_path / "earlier"
    shutil.copytree(uninterrupted, out)
    before = digests(out)
    extra = ["--gt_dir", str(toy_root / "gt"), "--no_meteor"] if script is main_task_caption else []
    with pytest.raises(CheckpointError, match=f"{out / 'pytorch_model.bin.0'} already exists.*--overwrite"):
        script.main(TRAIN + clevr_args(toy_root, out) + extra)
    assert digests(out) == before


def test_resuming_refuses_to_overwrite_later_checkpoints(toy_root, uninterrupted, tmp_path):
    out = tmp_path / "earlier"
    shutil.copytree(uninterrupted, out)
    before = digests(out)
    with pytest.raises(CheckpointError, match="pytorch_model.bin.1 already exists"):
        main_task_retrieval.main(TRAIN + clevr_args(toy_root, out) + ["--resume_model", str(out / "pytorch_opt.bin.0")])
    assert digests(out) == before


def test_resume_model_must_be_an_optimizer_file(toy_root, uninterrupted, tmp_path):
    with pytest.raises(CheckpointError, match="lacks epoch, optimizer_state_dict"):
        main_task_retrieval.main(TRAIN + clevr_args(toy_root, tmp_path / "new")
                                 + ["--resume_model", str(uninterrupted / "pytorch_model.bin.0")])


def test_stage_two_starts_from_the_last_stage_one_checkpoint(tmp_path):
    """What the Makefile passes to stage 2 (`python checkpoints.py <stage-1 dir>`): the highest epoch, compared as a
    number, whatever --epochs was; optimizer and unfinished temporary files are not model checkpoints."""
    for name in ("pytorch_model.bin.0", "pytorch_model.bin.9", "pytorch_model.bin.10", "pytorch_opt.bin.11",
                 "pytorch_model.bin.11.tmp123", "log.txt"):
        (tmp_path / name).write_bytes(b"")
    done = subprocess.run([sys.executable, str(CODE / "checkpoints.py"), str(tmp_path)], capture_output=True,
                          text=True, cwd=CODE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == str(tmp_path / "pytorch_model.bin.10")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=f"no pytorch_model.bin.<epoch> in {empty}: run stage 1"):
        last_checkpoint(str(empty))


def test_a_restart_continues_from_the_last_finished_epoch(toy_root, uninterrupted, tmp_path, monkeypatch):
    """What torchrun's elastic restart does (TORCHELASTIC_RESTART_COUNT > 0): the same command finds the last finished
    epoch (epoch 0; epoch 1 was cut off after its model file) and ends with the uninterrupted run's weights; the cut-off
    epoch's model file is the only file it replaces."""
    out = tmp_path / "cut"
    out.mkdir()
    for name in ("pytorch_model.bin.0", "pytorch_opt.bin.0", "pytorch_model.bin.1"):
        shutil.copy(uninterrupted / name, out / name)
    (out / "pytorch_model.bin.1").write_bytes(b"half an epoch")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    main_task_retrieval.main(TRAIN + clevr_args(toy_root, out))
    expected = torch.load(uninterrupted / "pytorch_model.bin.1", weights_only=True)
    resumed = torch.load(out / "pytorch_model.bin.1", weights_only=True)
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    assert digests(out)["pytorch_model.bin.0"] == digests(uninterrupted)["pytorch_model.bin.0"]


def test_a_restart_with_other_flags_is_refused(toy_root, uninterrupted, tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    for name in ("pytorch_model.bin.0", "pytorch_opt.bin.0"):
        shutil.copy(uninterrupted / name, out / name)
    before = digests(out)
    flags = [f if f != "2e-3" else "1e-3" for f in TRAIN]  # another --lr
    with pytest.raises(CheckpointError, match="written with other flags \\(--lr\\)"):
        main_task_retrieval.main(flags + clevr_args(toy_root, out) + ["--auto_resume"])
    assert digests(out) == before
