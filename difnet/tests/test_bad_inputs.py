"""Damaged copies of a small toy set, run through the entry scripts as a user would: each bad input stops with exit
code 2 and one last line naming the file and the fix, no traceback (also not from a DataLoader worker), and the
files already in the output folder untouched; --skip_corrupt skips corrupt samples instead, logging each."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from builders import config_dict, vocab_for_training
from data.coco import load_splits
from data.text import CaptionTokenizer
from models import CaptioningModel, ModelConfig

SUBPROJECT = Path(__file__).resolve().parents[1]
TINY = ["--d_model", "16", "--d_ff", "32", "--head", "2", "--N_enc", "2", "--N_dec", "1"]


@pytest.fixture(scope="session")
def prepared(small_toy, tmp_path_factory):
    """A vocabulary and an untrained tiny difnet_lrp checkpoint for the small toy set."""
    root = tmp_path_factory.mktemp("bad_inputs")
    splits = load_splits(str(small_toy / "annotations"))
    vocab = vocab_for_training(str(root / "vocab.pkl"), str(small_toy / "annotations"),
                               [ex.caption for ex in splits["train"] + splits["val"]], CaptionTokenizer())
    model = CaptioningModel(ModelConfig(mode="difnet_lrp", vocab_size=len(vocab), d_model=16, d_ff=32, h=2,
                                        n_enc=2, n_dec=1))
    torch.save({"state_dict": model.state_dict(), "config": config_dict(model.cfg)}, root / "toy.pth")
    return root


@pytest.fixture
def case(small_toy, prepared, tmp_path):
    """A copy of the toy set to damage, and an output folder already holding a checkpoint and the vocabulary."""
    data = tmp_path / "data"
    for name in ("annotations", "segmentations"):
        shutil.copytree(small_toy / name, data / name)
    shutil.copy(small_toy / "coco_grid_feats2.hdf5", data / "coco_grid_feats2.hdf5")
    out = tmp_path / "out"
    (out / "models").mkdir(parents=True)
    shutil.copy(prepared / "toy.pth", out / "models" / "toy.pth")
    shutil.copy(prepared / "vocab.pkl", out / "vocab.pkl")
    return data, out


def data_flags(data: Path, out: Path) -> list[str]:
    return ["--mode", "difnet_lrp", "--exp_name", "toy", "--features_path", str(data / "coco_grid_feats2.hdf5"),
            "--pixel_path", str(data / "segmentations"), "--annotation_folder", str(data / "annotations"),
            "--vocab_path", str(out / "vocab.pkl"), "--model_path", str(out / "models"), "--workers", "0",
            "--no_meteor", "--device", "cpu", *TINY]


def run(script: str, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SUBPROJECT.parent), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, script, *argv], cwd=SUBPROJECT, env=env, capture_output=True, text=True,
                          timeout=300)


def train(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run("train.py", *data_flags(data, out), "--logs_folder", str(out / "tb"), "--max_epochs", "1",
               "--batch_size", "40", *extra)


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_stops_cleanly(proc: subprocess.CompletedProcess, *named: str) -> None:
    """Exit 2, no traceback, and a last stderr line that names every string of ``named``."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("difnet: "), last
    for text in named:
        assert text in last, (text, last)


def assert_unchanged(out: Path, before: dict[str, str]) -> None:
    after = hashes(out)
    assert {name: after.get(name) for name in before} == before


def test_truncated_grid_features(case):
    data, out = case
    features = data / "coco_grid_feats2.hdf5"
    features.write_bytes(features.read_bytes()[: features.stat().st_size // 2])
    before = hashes(out)
    assert_stops_cleanly(train(data, out), str(features), "truncated", "make difnet-data")
    assert_unchanged(out, before)


def test_wrong_feature_shape_in_a_dataloader_worker(case):
    """Every feature is (49, 1024): the first batch a worker reads (in test.py) fails, and the worker's error arrives
    as the same one line."""
    data, out = case
    features = data / "coco_grid_feats2.hdf5"
    with h5py.File(features, "a") as f:
        for key in list(f):
            del f[key]
            f[key] = np.zeros((49, 1024), dtype=np.float32)
    before = hashes(out)
    proc = run("test.py", *data_flags(data, out), "--workers", "2")
    assert_stops_cleanly(proc, str(features), "has shape (49, 1024), expected (N, 2048)", "make difnet-data")
    assert "worker" not in proc.stderr.strip().splitlines()[-1]
    assert_unchanged(out, before)


def blank_first_train_caption(data: Path) -> tuple[Path, int]:
    ann_file = data / "annotations" / "captions_train2014.json"
    coco = json.loads(ann_file.read_text())
    ann_id = int(np.load(data / "annotations" / "coco_train_ids.npy")[0])
    next(a for a in coco["annotations"] if a["id"] == ann_id)["caption"] = "  "
    ann_file.write_text(json.dumps(coco))
    return ann_file, ann_id


def test_corrupt_segmentation_stops_and_skip_corrupt_skips_it(case):
    """Also: the original trains on empty captions (as '<bos> <eos>'), so one is kept, with a warning naming the
    file, the annotation ids and the count."""
    data, out = case
    ex = load_splits(str(data / "annotations"))["test"][0]
    path = data / "segmentations" / ex.folder / f"{ex.image_id}.npy"
    path.write_bytes(b"\x93NUMPY garbage" * 3)
    ann_file, ann_id = blank_first_train_caption(data)
    before = hashes(out)
    assert_stops_cleanly(run("test.py", *data_flags(data, out)), str(path), "not a readable .npy array",
                         "--skip_corrupt")
    assert_unchanged(out, before)

    proc = run("test.py", *data_flags(data, out), "--skip_corrupt", "--batch_size", "1")  # one batch left empty
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = [line for line in proc.stderr.splitlines() if "--skip_corrupt: skipping a sample" in line]
    assert len(skipped) == 1 and str(path) in skipped[0]
    assert "--skip_corrupt: skipped 1 corrupt images of 4" in proc.stderr
    assert "CIDEr" in proc.stdout
    assert f"1 empty captions in {ann_file} (annotation ids {ann_id}); kept, as the original does" in proc.stderr


def test_foreign_checkpoint(case):
    data, out = case
    checkpoint = out / "models" / "toy.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(10, 4)}, "epoch": 3}, checkpoint)
    before = hashes(out)
    proc = run("test.py", *data_flags(data, out))
    assert_stops_cleanly(proc, str(checkpoint), "no DIFNet weights", "DIFNet_lrp.pth")
    assert_unchanged(out, before)


def test_unwritable_output_folder_is_refused_before_training(case):
    data, out = case
    blocker = out / "models" / "toy.pth"  # a file where --model_path wants a folder
    before = hashes(out)
    proc = run("train.py", *data_flags(data, out), "--model_path", str(blocker), "--logs_folder", str(out / "tb"))
    assert_stops_cleanly(proc, f"cannot write to {blocker} (--model_path)", "writable folder")
    assert "Training starts" not in proc.stderr
    assert_unchanged(out, before)
