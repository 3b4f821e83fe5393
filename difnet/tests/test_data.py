"""Loaders read the toy set (written by toydata.coco_grid in the real formats) as the real data."""
import os
import pickle

import numpy as np
import pytest
import torch

from data.coco import CaptionDataset, ImageDataset, collate_captions, collate_images, load_splits
from data.features import GridFeatures, SegmentationFeatures
from data.text import CaptionTokenizer, build_vocab, decode, merge_repeats, numericalize
from data.vocab import Vocab, load_vocab, save_vocab
from errors import DifnetError


def test_splits_follow_the_karpathy_id_files(toy):
    splits = load_splits(str(toy / "annotations"))
    assert {k: len(v) for k, v in splits.items()} == {"train": 5 * 160, "val": 5 * 20, "test": 5 * 20}
    assert {ex.folder for ex in splits["train"]} == {"train2014", "val2014"}  # train + restval
    assert {ex.folder for ex in splits["test"]} == {"val2014"}
    assert len(load_splits(str(toy / "annotations"), use_restval=False)["train"]) == 5 * 140
    ex = splits["test"][0]
    assert ex.file_name == f"COCO_val2014_{ex.image_id:012d}.jpg"


def test_caption_batches(toy):
    splits = load_splits(str(toy / "annotations"))
    tokenizer = CaptionTokenizer()
    vocab = build_vocab(tokenizer(ex.caption) for ex in splits["train"] + splits["val"])
    grid = GridFeatures(str(toy / "coco_grid_feats2.hdf5"))
    seg = SegmentationFeatures(str(toy / "segmentations"))
    items = [CaptionDataset(splits["train"], grid, seg, tokenizer)[i] for i in range(4)]
    g, tokens, s = collate_captions(vocab)(items)
    assert g.shape == (4, 49, 2048) and g.dtype == torch.float32
    assert s.shape == (4, 133, 7, 7) and s.dtype == torch.float32
    assert torch.all(tokens[:, 0] == vocab.stoi["<bos>"]) and tokens.dtype == torch.long
    assert decode(tokens[:1, 1:], vocab)[0] == " ".join(tokenizer(splits["train"][0].caption))
    # each cell's class fractions sum to one (scene + shapes), like area fractions of a panoptic map
    np.testing.assert_allclose(s.sum(1).numpy(), 1.0, atol=1e-5)

    batch = collate_images([ImageDataset(splits["test"], grid, seg)[i] for i in range(3)])
    assert batch.grid.shape == (3, 49, 2048) and len(batch.refs) == 3 and all(len(r) == 5 for r in batch.refs)
    assert batch.image_ids.tolist() == [ex.image_id for ex in splits["test"][0:15:5]]


def test_grid_file_opened_once_per_process(toy):
    grid = GridFeatures(str(toy / "coco_grid_feats2.hdf5"))
    image_id = load_splits(str(toy / "annotations"))["test"][0].image_id
    grid[image_id]
    handle = grid._handle()
    for _ in range(50):
        grid[image_id]
    assert grid._handle() is handle
    assert pickle.loads(pickle.dumps(grid))._file is None  # workers open their own handle


def test_tokenizer_and_text_helpers():
    tok = CaptionTokenizer()
    assert tok("A Red circle, left of the square.\n") == ["a", "red", "circle", "left", "of", "the", "square"]
    vocab = Vocab(__import__("collections").Counter({"a": 9, "red": 9, "circle": 5, "rare": 1}), min_freq=5)
    assert vocab.itos == ["<unk>", "<pad>", "<bos>", "<eos>", "a", "red", "circle"]  # by frequency, then a-z
    assert vocab.stoi["rare"] == 0
    t = numericalize([["a", "red"], ["circle"]], vocab)
    assert t.tolist() == [[2, 4, 5, 3], [2, 6, 3, 1]]
    assert decode(torch.tensor([[4, 5, 3, 6]]), vocab) == ["a red"]
    assert merge_repeats(["a", "a", "red", "red", "a"]) == "a red a"


def test_vocab_pickle_compatible_with_the_original(tmp_path):
    from collections import Counter

    vocab = Vocab(Counter({"a": 7, "circle": 6}), min_freq=5)
    path = tmp_path / "vocab.pkl"
    save_vocab(vocab, str(path))
    raw = path.read_bytes()
    assert b"data.vocab" in raw and b"Vocab" in raw and b"_default_unk_index" in raw  # the original's class path
    loaded = load_vocab(str(path))
    assert loaded.itos == vocab.itos and loaded.stoi["zebra"] == 0 and loaded.freqs == vocab.freqs

    path.write_bytes(pickle.dumps({"itos": ["<unk>"]}.__class__))  # not a vocabulary
    with pytest.raises(DifnetError, match="not a DIFNet vocabulary"):
        load_vocab(str(path))
    with pytest.raises(DifnetError, match="not found"):
        load_vocab(str(tmp_path / "missing.pkl"))


def test_no_file_descriptor_leak_over_50_epochs(toy):
    """The original reopens the hdf5 file per sample and never closes it ("Too many open files", issue #8)."""
    splits = load_splits(str(toy / "annotations"))
    dataset = ImageDataset(splits["test"], GridFeatures(str(toy / "coco_grid_feats2.hdf5")),
                           SegmentationFeatures(str(toy / "segmentations")))
    dataset[0]
    open_fds = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        for i in range(len(dataset)):
            dataset[i]
    assert len(os.listdir("/proc/self/fd")) == open_fds
