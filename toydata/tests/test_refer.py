"""toydata.refer: read back with a small reader written from the refer/ReferIt format description."""
from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image
from pycocotools import mask as cocomask

from toydata.refer import write
from toydata.scene import COLOURS, SHAPES

ROOT = Path(__file__).resolve().parents[2]
REF_FIELDS = {"ref_id", "ann_id", "image_id", "category_id", "split", "sentences", "file_name", "sent_ids"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("refer")
    write(out, seed=3, size=24, image_size=64)
    return out


def read_refer(root: Path) -> tuple[list[dict], dict]:
    with open(root / "other" / "refcoco" / "refs(unc).p", "rb") as f:
        refs = pickle.load(f)
    with open(root / "other" / "refcoco" / "instances.json") as f:
        instances = json.load(f)
    return refs, instances


def test_refs_and_instances_fields(toy):
    refs, instances = read_refer(toy)
    assert set(instances) == {"images", "annotations", "categories"}
    assert {c["name"] for c in instances["categories"]} == set(SHAPES)
    anns = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    assert {r["split"] for r in refs} == {"train", "val", "testA", "testB"}
    for ref in refs:
        assert set(ref) == REF_FIELDS
        ann = anns[ref["ann_id"]]
        assert ann["image_id"] == ref["image_id"] and ann["category_id"] == ref["category_id"]
        assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"], list) and len(ann["bbox"]) == 4
        assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
        for sentence in ref["sentences"]:
            assert set(sentence) == {"sent", "sent_id", "tokens", "raw"}
            assert sentence["tokens"] == sentence["sent"].split()
            assert any(c in sentence["tokens"] for c in COLOURS)
        info = images[ref["image_id"]]
        path = toy / "other/images/mscoco/images/train2014" / f"COCO_train2014_{ref['image_id']:012d}.jpg"
        assert info["file_name"] == path.name
        with Image.open(path) as img:
            assert img.size == (info["width"], info["height"]) and img.mode == "RGB"


def test_polygon_masks_cover_the_drawn_object(toy):
    refs, instances = read_refer(toy)
    images = {i["id"]: i for i in instances["images"]}
    ann = instances["annotations"][0]
    info = images[ann["image_id"]]
    mask = cocomask.decode(cocomask.frPyObjects(ann["segmentation"], info["height"], info["width"])).max(axis=2)
    assert mask.sum() == pytest.approx(ann["area"])
    ref = next(r for r in refs if r["ann_id"] == ann["id"])
    colour = next(c for c in COLOURS if c in ref["sentences"][0]["tokens"])
    image = np.asarray(Image.open(toy / "other/images/mscoco/images/train2014" / info["file_name"]))
    inner = mask.astype(bool)
    assert np.abs(image[inner].mean(0) - np.array(COLOURS[colour])).max() < 25


def test_referit_layout(toy):
    splits = toy / "referit" / "splits"
    tables = {s: json.loads((splits / "referit" / f"referit_query_{s}.json").read_text())
              for s in ("train", "val", "trainval", "test")}
    assert tables["trainval"] == {**tables["train"], **tables["val"]}
    name, queries = next(iter(tables["train"].items()))
    image_id, object_id = name.split("_")
    assert (toy / "referit" / "images" / f"{image_id}.jpg").exists() and queries
    segimg = sio.loadmat(toy / "referit" / "mask" / f"{name}.mat")["segimg_t"]
    assert set(np.unique(segimg)) == {0, 1} and 0 < (segimg == 0).mean() < 0.5
    for vocab in ("vocabulary_Gref.txt", "vocabulary_referit.txt"):
        lines = (splits / vocab).read_text().split()
        assert lines[:4] == ["<pad>", "<go>", "<eos>", "<unk>"]
        assert set(COLOURS) | set(SHAPES) <= set(lines)


def test_twins_are_told_apart_by_position(toy):
    refs, _ = read_refer(toy)
    by_image: dict[int, list[str]] = {}
    for ref in refs:
        by_image.setdefault(ref["image_id"], []).append(ref["sentences"][0]["sent"])
    for sentences in by_image.values():
        assert len(set(sentences)) == len(sentences), "every object of an image needs its own expression"


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_deterministic_per_seed_via_cli(tmp_path):
    cmd = [sys.executable, "-m", "toydata.refer", "--size", "8", "--image-size", "48", "--seed", "5", "--out"]
    for name in ("a", "b"):
        subprocess.run([*cmd, str(tmp_path / name)], check=True, cwd=ROOT)
    write(tmp_path / "c", seed=6, size=8, image_size=48)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
