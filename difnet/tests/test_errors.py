"""Inputs a user can get wrong stop with one line naming the file, key or flag and the fix."""
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import test as test_script
from builders import config_dict, load_checkpoint, load_weights, vocab_for_training
from data.coco import check_visual_inputs, load_splits
from data.features import GridFeatures, SegmentationFeatures
from data.text import CaptionTokenizer
from data.vocab import Vocab, load_vocab, save_vocab
from errors import DifnetError
from models import CaptioningModel, ModelConfig

SUBPROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def broken_toy(toy, tmp_path):
    """A copy of the toy set that each test can damage."""
    shutil.copytree(toy / "annotations", tmp_path / "annotations")
    shutil.copytree(toy / "segmentations", tmp_path / "segmentations")
    shutil.copy(toy / "coco_grid_feats2.hdf5", tmp_path / "coco_grid_feats2.hdf5")
    return tmp_path


def first_test_image(root: Path):
    return load_splits(str(root / "annotations"))["test"][0]


def test_missing_feature_key(broken_toy):
    ex = first_test_image(broken_toy)
    with h5py.File(broken_toy / "coco_grid_feats2.hdf5", "a") as f:
        del f[f"{ex.image_id}_features"]
    grid = GridFeatures(str(broken_toy / "coco_grid_feats2.hdf5"))
    splits = load_splits(str(broken_toy / "annotations"))
    with pytest.raises(DifnetError, match=rf"no key '{ex.image_id}_features'.*make difnet-data"):
        check_visual_inputs(splits["test"], grid, None)
    with pytest.raises(DifnetError, match=rf"no key '{ex.image_id}_features'"):
        grid[ex.image_id]


def test_wrong_feature_shape(broken_toy):
    ex = first_test_image(broken_toy)
    with h5py.File(broken_toy / "coco_grid_feats2.hdf5", "a") as f:
        del f[f"{ex.image_id}_features"]
        f[f"{ex.image_id}_features"] = np.zeros((49, 1024), dtype=np.float32)
    with pytest.raises(DifnetError, match=r"has shape \(49, 1024\), expected \(N, 2048\)"):
        GridFeatures(str(broken_toy / "coco_grid_feats2.hdf5"))[ex.image_id]


def test_missing_and_misshapen_segmentation(broken_toy):
    ex = first_test_image(broken_toy)
    path = broken_toy / "segmentations" / "val2014" / f"{ex.image_id}.npy"
    seg = SegmentationFeatures(str(broken_toy / "segmentations"))
    np.save(path, np.zeros((133, 14, 14), dtype=np.float32))
    with pytest.raises(DifnetError, match=r"has shape \(133, 14, 14\), expected \(133, 7, 7\)"):
        seg(ex.image_id, "val2014")
    os.remove(path)
    grid = GridFeatures(str(broken_toy / "coco_grid_feats2.hdf5"))
    with pytest.raises(DifnetError, match=rf"segmentation file .*{ex.image_id}.npy not found \(--pixel_path\)"):
        check_visual_inputs(load_splits(str(broken_toy / "annotations"))["test"], grid, seg)


def test_vocabulary_size_mismatch(tmp_path):
    model = CaptioningModel(ModelConfig(mode="base", vocab_size=30, d_model=16, d_ff=32, h=2))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "x.pth")
    other = CaptioningModel(ModelConfig(mode="base", vocab_size=31, d_model=16, d_ff=32, h=2))
    with pytest.raises(DifnetError, match=r"vocabulary of 30 tokens but the vocabulary has 31.*--vocab_path"):
        load_weights(other, load_checkpoint(str(tmp_path / "x.pth"))["state_dict"], "x.pth")
    lrp = CaptioningModel(ModelConfig(mode="difnet", vocab_size=30, d_model=16, d_ff=32, h=2))
    with pytest.raises(DifnetError, match=r"does not fit mode 'difnet'.*--mode"):
        load_weights(lrp, model.state_dict(), "x.pth")
    with pytest.raises(DifnetError, match=r"checkpoint .*missing.pth not found"):
        load_checkpoint(str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("checkpoint_tokens, vocab_tokens", [(29, 31), (31, 29)])
def test_test_py_refuses_a_vocabulary_of_another_size(tmp_path, checkpoint_tokens, vocab_tokens):
    """test.py builds the model from the checkpoint's recorded sizes; the vocabulary must still match them."""
    model = CaptioningModel(ModelConfig(mode="base", vocab_size=checkpoint_tokens, d_model=16, d_ff=32, h=2))
    torch.save({"state_dict": model.state_dict(), "config": config_dict(model.cfg)}, tmp_path / "x.pth")
    save_vocab(Vocab(Counter({f"word{i}": 5 for i in range(vocab_tokens - 4)})), str(tmp_path / "vocab.pkl"))
    args = test_script.get_args_parser().parse_args(
        ["--exp_name", "x", "--model_path", str(tmp_path), "--vocab_path", str(tmp_path / "vocab.pkl")])
    with pytest.raises(DifnetError, match=rf"vocabulary of {checkpoint_tokens} tokens but the vocabulary has "
                                          rf"{vocab_tokens}: pass the vocab.pkl it was trained with \(--vocab_path\)"):
        test_script.load_model(args)


def test_a_vocabulary_built_for_other_captions_is_refused(toy, small_toy, tmp_path):
    """train.py reuses an existing vocab.pkl (as the original does); one it built for another data set is refused."""
    def captions(root: Path) -> list[str]:
        splits = load_splits(str(root / "annotations"))
        return [ex.caption for ex in splits["train"] + splits["val"]]

    path = str(tmp_path / "vocab.pkl")
    tokenizer = CaptionTokenizer()
    built = vocab_for_training(path, str(toy / "annotations"), captions(toy), tokenizer)
    assert load_vocab(path).built_from["annotation_folder"] == str(toy / "annotations")
    shutil.copytree(toy / "annotations", tmp_path / "moved")  # the same captions elsewhere: reused
    assert vocab_for_training(path, str(tmp_path / "moved"), captions(toy), tokenizer).itos == built.itos
    with pytest.raises(DifnetError, match=rf"{path} was built from the captions of {toy / 'annotations'}, not those "
                                          rf"of --annotation_folder {small_toy / 'annotations'}: delete {path} to "
                                          "rebuild it, or pass --vocab_path"):
        vocab_for_training(path, str(small_toy / "annotations"), captions(small_toy), tokenizer)
    save_vocab(Vocab(Counter({"a": 5})), path)  # like the released vocab.pkl: no record, reused as it is
    assert vocab_for_training(path, str(small_toy / "annotations"), captions(small_toy), tokenizer).itos[-1] == "a"


def test_missing_annotations(tmp_path):
    with pytest.raises(DifnetError, match=r"captions_train2014.json not found \(--annotation_folder\)"):
        load_splits(str(tmp_path))


def test_entry_script_prints_one_line(toy, tmp_path):
    """The scripts turn these errors into a one-line exit message, not a traceback."""
    env = {**os.environ, "PYTHONPATH": str(SUBPROJECT.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "test.py", "--exp_name", "none", "--model_path", str(tmp_path), "--vocab_path",
         str(tmp_path / "vocab.pkl"), "--annotation_folder", str(toy / "annotations")],
        cwd=SUBPROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("difnet:")]
    assert len(lines) == 1 and lines[0].startswith("difnet: vocabulary") and "make difnet-data" in lines[0]
