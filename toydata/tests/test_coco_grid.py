"""toydata.coco_grid writes DIFNet's real on-disk formats; read back with a reference reader written from the spec."""
import dataclasses
import json

import h5py
import numpy as np
import pytest

from toydata.coco_grid import captions, grid_features, segmentation, write
from toydata.scene import BACKGROUNDS, render, sample_scene


def read_dataset(root):
    """Spec reader: annotation ids of the Karpathy files -> (image id, split folder, caption)."""
    anns, files = {}, {}
    for folder in ("train2014", "val2014"):
        coco = json.loads((root / "annotations" / f"captions_{folder}.json").read_text())
        for im in coco["images"]:
            files[im["id"]] = (folder, im["file_name"])
        for a in coco["annotations"]:
            anns[a["id"]] = (folder, a["image_id"], a["caption"])
    splits = {}
    for name, folder in (("train", "train2014"), ("restval", "val2014"), ("dev", "val2014"), ("test", "val2014")):
        ids = np.load(root / "annotations" / f"coco_{name}_ids.npy")
        assert ids.ndim == 1 and ids.dtype.kind == "i"
        splits[name] = [anns[int(i)] for i in ids]
        assert all(f == folder for f, _, _ in splits[name])  # train ids index the train json, the rest the val json
    return splits, files


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco_grid")
    write(out, seed=3, size=40)
    return out


def test_formats(written):
    splits, files = read_dataset(written)
    assert {k: len(v) for k, v in splits.items()} == {"train": 5 * 28, "restval": 20, "dev": 20, "test": 20}
    with h5py.File(written / "coco_grid_feats2.hdf5", "r") as h5:
        assert len(h5.keys()) == 40
        for folder, image_id, caption in splits["train"][:5] + splits["test"][:5]:
            feats = h5[f"{image_id}_features"][()]
            assert feats.shape == (49, 2048) and feats.dtype == np.float32 and (feats >= 0).all()
            seg = np.load(written / "segmentations" / folder / f"{image_id}.npy")
            assert seg.shape == (133, 7, 7) and seg.dtype == np.float32
            np.testing.assert_allclose(seg.sum(0), 1.0, atol=1e-5)  # per-cell class area fractions
            name = files[image_id][1]
            assert name == f"COCO_{folder}_{image_id:012d}.jpg"  # the image id is the number after the last '_'
            assert (written / "images" / folder / name).is_file()
    per_image = {}
    for _, image_id, caption in splits["train"]:
        per_image.setdefault(image_id, []).append(caption)
    assert all(len(c) == 5 for c in per_image.values())


def test_deterministic_per_seed(tmp_path):
    write(tmp_path / "a", seed=5, size=8)
    write(tmp_path / "b", seed=5, size=8)
    write(tmp_path / "c", seed=6, size=8)
    for rel in ("annotations/captions_val2014.json", "annotations/coco_test_ids.npy"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a/annotations/captions_val2014.json").read_bytes() != \
        (tmp_path / "c/annotations/captions_val2014.json").read_bytes()
    with h5py.File(tmp_path / "a/coco_grid_feats2.hdf5") as fa, h5py.File(tmp_path / "b/coco_grid_feats2.hdf5") as fb:
        assert sorted(fa) == sorted(fb) and all(np.array_equal(fa[k][()], fb[k][()]) for k in fa)


def test_scene_word_only_in_segmentation():
    """Changing the scene leaves the grid features unchanged and moves only the segmentation's stuff channel."""
    scene = sample_scene(np.random.default_rng(0), 112, 112, n_objects=(2, 2))
    gains = np.ones(2048, dtype=np.float32)
    feats, segs, caps = [], [], []
    for bg in BACKGROUNDS:
        s = dataclasses.replace(scene, background=bg)
        _, masks, _ = render(s)
        feats.append(grid_features(s, masks, np.random.default_rng(1), gains))
        segs.append(segmentation(s, masks))
        caps.append(captions(s))
    assert all(np.array_equal(feats[0], f) for f in feats[1:])
    assert len({seg.argmax(0)[0, 0] for seg in segs}) == len(BACKGROUNDS)
    assert all(bg in c.split() or f"{bg}." in c.split() for bg, cs in zip(BACKGROUNDS, caps) for c in cs)
