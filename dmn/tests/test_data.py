"""ReferDataset on the toy refer/ReferIt data: preprocessing outputs, samples, errors."""
from __future__ import annotations

import json
import pickle
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as cocomask

from dmn_pytorch.data.refer_files import DataFileError, load_refs
from dmn_pytorch.data.referit_loader import ReferDataset, collate_padded
from dmn_pytorch.data.transforms import image_to_tensor, resize_longer_side


@pytest.fixture(scope="module")
def split_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("splits")


def test_coco_splits_written_under_split_root(toy_data, split_root):
    train = ReferDataset(toy_data, split_root=split_root, dataset="unc", split="train")
    folder = split_root / "unc"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["corpus.pth", "data_root.txt"] + [f"unc_{s}.pth" for s in ("train", "val", "trainval", "testA", "testB")])
    assert torch.load(folder / "unc_trainval.pth", weights_only=True) == []
    trainval = ReferDataset(toy_data, split_root=split_root, dataset="unc", split="trainval")
    val = ReferDataset(toy_data, split_root=split_root, dataset="unc", split="val")
    assert trainval.images == train.images + val.images
    # One entry per sentence of each train ref, refs sorted by file_name.
    refs = pickle.load(open(toy_data / "other/refcoco/refs(unc).p", "rb"))
    expected = [(f"COCO_train2014_{r['image_id']:012d}.jpg", f"{r['ann_id']}.pth", s["sent"])
                for r in sorted((r for r in refs if r["split"] == "train"), key=lambda r: r["file_name"])
                for s in r["sentences"]]
    assert train.images == expected


def test_split_files_are_rebuilt_for_another_data_folder(toy_data, tmp_path):
    """The split cache is keyed by --data too: a rerun on another data folder does not reuse the first one's list
    (which named images the second folder does not have)."""
    from toydata.refer import write

    other = tmp_path / "other_toy"
    write(other, seed=1, size=16, image_size=64)
    shared = tmp_path / "splits"
    first = ReferDataset(toy_data, split_root=shared, dataset="unc", split="train")
    second = ReferDataset(other, split_root=shared, dataset="unc", split="train")
    alone = ReferDataset(other, split_root=tmp_path / "own_splits", dataset="unc", split="train")
    assert second.images == alone.images and second.images != first.images
    second[len(second) - 1]  # every listed image exists in the second folder
    assert (shared / "unc" / "data_root.txt").read_text().strip() == str(other.resolve())
    assert sorted(p.name for p in shared.iterdir()) == ["unc"]
    again = ReferDataset(toy_data, split_root=shared, dataset="unc", split="train")
    assert again.images == first.images


def test_coco_mask_is_the_decoded_polygon(toy_data, split_root):
    ReferDataset(toy_data, split_root=split_root, dataset="unc", split="val")
    instances = json.loads((toy_data / "other/refcoco/instances.json").read_text())
    ann = instances["annotations"][5]
    image = next(i for i in instances["images"] if i["id"] == ann["image_id"])
    expected = cocomask.decode(cocomask.frPyObjects(ann["segmentation"], image["height"], image["width"])).max(2)
    mask = torch.load(toy_data / "other/unc/mask" / f"{ann['id']}.pth", weights_only=True)
    assert mask.dtype == torch.float32 and torch.equal(mask, torch.from_numpy(expected.astype(np.float32)))


def test_low_res_and_high_res_samples(toy_data, split_root):
    low = ReferDataset(toy_data, split_root=split_root, dataset="unc", split="val",
                       transform=partial(image_to_tensor, size=32),
                       annotation_transform=partial(resize_longer_side, size=32), max_query_len=-1)
    img, mask, words = low[0]
    assert img.shape == (3, 32, 32) and mask.shape == (32, 32) and words.dtype == torch.long
    assert abs(float(img.mean())) < 3  # ImageNet-normalised
    soft = ((mask > 0) & (mask < 1)).sum()
    assert soft > 0  # resized, not re-binarised
    high = ReferDataset(toy_data, split_root=split_root, dataset="unc", split="val",
                        transform=partial(image_to_tensor, size=32), max_query_len=-1)
    _, mask, _ = high[0]
    assert mask.shape == (64, 64) and set(mask.unique().tolist()) <= {0.0, 1.0}
    tokens = low.untokenize_word_vector(words)
    assert "<unk>" in tokens and len(tokens) % 2 == 1


def test_referit_dataset(toy_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(toy_data / "referit", data / "referit")
    test = ReferDataset(data, split_root=tmp_path / "splits", dataset="referit", split="test",
                        annotation_transform=None)
    image_file, mask_file, query = test.images[0]
    mask = torch.load(data / "referit/mask" / mask_file, weights_only=True)
    assert mask.dtype == torch.float64 and 0 < float(mask.mean()) < 0.5
    _, sample_mask, _ = test[0]
    assert torch.equal(sample_mask, mask)
    assert len(ReferDataset(data, split_root=tmp_path / "splits", dataset="referit", split="trainval")) > len(test) / 3


def test_collate_pads_images_masks_and_words():
    batch = [(torch.ones(3, 4, 6), torch.ones(4, 6), torch.tensor([1, 2, 3])),
             (torch.ones(3, 6, 4), torch.ones(6, 4), torch.tensor([5]))]
    imgs, masks, words, lengths, valid = collate_padded(batch, pad_index=0)
    assert imgs.shape == (2, 3, 6, 6) and masks.shape == valid.shape == (2, 6, 6)
    assert words.tolist() == [[1, 2, 3], [5, 0, 0]] and lengths.tolist() == [3, 1]
    assert valid[0].sum() == 24 and valid[1].sum() == 24 and imgs[0, :, 4:].abs().sum() == 0


def test_errors_name_the_file(toy_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    with pytest.raises(DataFileError, match="vocabulary_Gref.txt"):
        (data / "referit/splits/vocabulary_Gref.txt").rename(data / "moved.txt")
        ReferDataset(data, split_root=tmp_path / "s1", dataset="unc", split="val")
    (data / "moved.txt").rename(data / "referit/splits/vocabulary_Gref.txt")
    ds = ReferDataset(data, split_root=tmp_path / "s2", dataset="unc", split="val")
    image_file, mask_file, _ = ds.images[0]
    (data / "other/unc/mask" / mask_file).unlink()
    with pytest.raises(DataFileError, match=f"missing mask .*{mask_file}"):
        ds[0]
    (data / "other/images/mscoco/images/train2014" / image_file).write_bytes(b"not a jpeg")
    with pytest.raises(DataFileError, match=f"image .*{image_file} cannot be decoded"):
        ds[0]
    with pytest.raises(ValueError, match="no split 'testC'"):
        ReferDataset(data, split_root=tmp_path / "s2", dataset="unc", split="testC")
    with pytest.raises(DataFileError, match="refs"):
        load_refs(tmp_path / "nowhere" / "refs(unc).p")


def test_refs_reader_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("boom",))

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(pickle.UnpicklingError):
        load_refs(path)


def test_shuffled_queries_control_keeps_images_and_permutes_queries(toy_data, split_root):
    ds = ReferDataset(toy_data, split_root=split_root, dataset="unc", split="train")
    before = list(ds.images)
    ds.shuffle_queries(seed=1)
    assert [i[:2] for i in ds.images] == [i[:2] for i in before]
    assert sorted(i[2] for i in ds.images) == sorted(i[2] for i in before)
    assert sum(a[2] != b[2] for a, b in zip(ds.images, before)) > len(before) // 2
