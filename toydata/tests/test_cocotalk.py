"""The cocotalk toy set, read back with a small reader written from the spatial_captioning spec."""
import hashlib
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from toydata import cocotalk
from toydata.scene import SceneObject, relation


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cocotalk")
    cocotalk.write(out, seed=3, size=60)
    return out


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            data = p.read_bytes()
            if p.suffix == ".h5":  # HDF5 headers carry no timestamps with h5py defaults, but be safe
                with h5py.File(p) as f:
                    data = b"".join(np.asarray(f[k]).tobytes() for k in sorted(f))
            h.update(data)
    return h.hexdigest()


def test_karpathy_json(toy):
    data = json.loads((toy / "dataset_coco.json").read_text())
    imgs = data["images"]
    assert len(imgs) == 60 and {i["split"] for i in imgs} == {"train", "restval", "val", "test"}
    sentids = [s["sentid"] for i in imgs for s in i["sentences"]]
    assert sentids == list(range(len(sentids)))
    for i in imgs:
        assert (toy / "images" / i["filepath"] / i["filename"]).is_file()
        assert i["filename"] == f"COCO_{i['filepath']}_{i['cocoid']:012d}.jpg"
        assert i["sentids"] == [s["sentid"] for s in i["sentences"]] and len(i["sentences"]) == 5
        assert all(s["imgid"] == i["imgid"] and s["tokens"] for s in i["sentences"])


def test_coco_annotations(toy):
    anns = json.loads((toy / "annotations" / "captions_val2014.json").read_text())
    karpathy = json.loads((toy / "dataset_coco.json").read_text())["images"]
    assert {i["id"] for i in anns["images"]} == {i["cocoid"] for i in karpathy}
    assert len(anns["annotations"]) == sum(len(i["sentences"]) for i in karpathy)
    assert all(a["caption"].endswith(".") and a["caption"][0].isupper() for a in anns["annotations"])


def test_labels_h5_and_vocab(toy):
    talk = json.loads((toy / "cocotalk.json").read_text())
    itow = talk["ix_to_word"]
    assert sorted(map(int, itow)) == list(range(1, len(itow) + 1)) and itow[str(len(itow))] == "UNK"
    karpathy = json.loads((toy / "dataset_coco.json").read_text())["images"]
    with h5py.File(toy / "cocotalk_label.h5") as f:
        assert set(f) == {"labels", "label_start_ix", "label_end_ix", "label_length"}
        labels, start, end, length = (f[k][:] for k in ("labels", "label_start_ix", "label_end_ix", "label_length"))
    assert labels.dtype == start.dtype == end.dtype == length.dtype == np.uint32
    assert labels.shape == (300, 16) and start.shape == end.shape == (60,)
    assert start[0] == 1 and end[-1] == labels.shape[0]  # 1-based, inclusive
    for img, entry, s, e in zip(karpathy, talk["images"], start, end):
        assert entry["id"] == img["cocoid"] and entry["split"] == img["split"]
        assert entry["file_path"] == f"{img['filepath']}/{img['filename']}"
        for row, sent in zip(labels[s - 1:e], img["sentences"]):
            words = [itow[str(i)] for i in row if i > 0]
            expected = [w if w in itow.values() else "UNK" for w in sent["tokens"]][:16]
            assert words == expected
    assert (length == (labels > 0).sum(1)).all()


def test_features_boxes_and_grid_vectors(toy):
    talk = json.loads((toy / "cocotalk.json").read_text())
    for entry in talk["images"][:20]:
        cid = entry["id"]
        att = np.load(toy / "cocobu_att" / f"{cid}.npz")["feat"]
        fc = np.load(toy / "cocobu_fc" / f"{cid}.npy")
        box = np.load(toy / "cocobu_box" / f"{cid}.npy")
        vec = np.load(toy / "cocobu_box_vec" / f"{cid}.npy")
        k = att.shape[0]
        assert att.dtype == fc.dtype == box.dtype == vec.dtype == np.float32
        assert att.shape == (k, 2048) and fc.shape == (2048,) and box.shape == (k, 4) and vec.shape == (k, 144)
        np.testing.assert_allclose(fc, att.mean(0), rtol=1e-6)
        w, h = entry["width"], entry["height"]
        assert (box[:, 0] >= 0).all() and (box[:, 2] <= w + 1e-3).all() and (box[:, 3] <= h + 1e-3).all()
        # coverage fractions: total covered cell-area equals the box's normalised area * 144
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) / (w * h) * 144
        np.testing.assert_allclose(vec.sum(1), area, rtol=1e-4)
        assert vec.min() >= 0 and vec.max() <= 1 + 1e-6


def test_grid_layout_rows_are_y():
    vec = cocotalk.grid_coverage(np.array([[0, 0, 10, 120]], np.float32), 120, 120).reshape(12, 12)
    np.testing.assert_allclose(vec[:, 0], 1.0, rtol=1e-5)  # a strip along the left edge covers column 0
    assert vec[:, 1:].max() < 1e-5


def test_cider_document_frequencies(toy):
    karpathy = json.loads((toy / "dataset_coco.json").read_text())["images"]
    n_train = sum(i["split"] in ("train", "restval") for i in karpathy)
    words = pickle.loads((toy / "coco-train-words.p").read_bytes())
    idxs = pickle.loads((toy / "coco-train-idxs.p").read_bytes())
    assert words["ref_len"] == idxs["ref_len"] == n_train
    assert words["document_frequency"][("<eos>",)] == n_train == idxs["document_frequency"][("0",)]
    assert max(len(g) for g in idxs["document_frequency"]) == 4
    assert len(words["document_frequency"]) == len(idxs["document_frequency"])


def test_cider_pickles_are_defaultdicts_as_self_critical_writes(toy):
    """ruotianluo's CiderD reads document_frequency[ngram] also for n-grams no reference has (KeyError on a dict)."""
    for name in ("words", "idxs"):
        raw = (toy / f"coco-train-{name}.p").read_bytes()
        assert raw[:2] == b"\x80\x02"  # protocol 2, self-critical.pytorch's pickle_dump
        df = pickle.loads(raw)["document_frequency"]
        assert df.default_factory is float
        assert df[("never", "seen", "ngram")] == 0.0


def test_captions_state_the_true_relation():
    a = SceneObject("circle", "red", "small", 10, 50, 5)
    b = SceneObject("square", "blue", "small", 90, 50, 5)
    assert relation(a, b) == "left of"
    rng = np.random.default_rng(0)
    from toydata.scene import Scene
    scene = Scene(100, 100, "grass", (a, b))
    caps = cocotalk.scene_captions(rng, scene, {w: 0 for w in cocotalk.RARE_WORDS})
    for cap in caps:
        assert cap.index("red") < cap.index("blue") and "left of" in cap  # red comes first in COLOURS
    caps = cocotalk.scene_captions(rng, Scene(100, 100, "grass", (b, a)), {w: 0 for w in cocotalk.RARE_WORDS})
    assert all(c.index("red") < c.index("blue") and "left of" in c for c in caps)


def test_scenes_have_two_objects_across_the_midline():
    rng = np.random.default_rng(1)
    for _ in range(20):
        scene = cocotalk.sample_pair_scene(rng, 160, 120)
        assert len(scene.objects) == 2 and cocotalk.across_midline(scene)


def test_named_objects_third_tells_the_relation():
    """The first-named object's own box gives the relation word: left/right third, else top/bottom half."""
    rng = np.random.default_rng(2)
    seen = set()
    for i in range(400):
        width, height = cocotalk.IMAGE_SIZES[i % 3]
        scene = cocotalk.sample_pair_scene(rng, width, height)
        a, b = scene.objects
        x1, y1, x2, y2 = a.box
        assert 0 <= x1 and 0 <= y1 and x2 <= width and y2 <= height
        assert np.hypot(a.cx - b.cx, a.cy - b.cy) > a.radius + b.radius  # no overlap
        first, second = cocotalk._subject_first(a, b)
        fx, fy = first.cx / width, first.cy / height
        expected = ("left of" if fx <= 1 / 3 else "right of" if fx >= 2 / 3 else "above" if fy < 0.5 else "below")
        assert relation(first, second) == expected
        seen.add(expected)
    assert seen == {"left of", "right of", "above", "below"}


def test_deterministic_per_seed(tmp_path):
    cocotalk.write(tmp_path / "a", seed=5, size=12)
    cocotalk.write(tmp_path / "b", seed=5, size=12)
    cocotalk.write(tmp_path / "c", seed=6, size=12)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
