"""toydata.idc: read back with a small reference reader written from the CLIP4IDC spec; determinism per seed."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toydata.idc import KEYWORDS, NO_CHANGE_CAPTIONS, write

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("idc")
    write(out, seed=3, size=32)
    return out


def read_spot(root: Path) -> dict:
    """Reference reader: raw and reformat json per split, image pairs <id>.png / <id>_2.png."""
    spot = root / "spot-the-diff"
    out = {}
    for split in SPLITS:
        raw = json.loads((spot / f"{split}.json").read_text())
        reformat = json.loads((spot / f"reformat_{split}.json").read_text())
        out[split] = (raw, reformat)
    return out


def test_spot_layout(root):
    data = read_spot(root)
    ids_seen = set()
    for split, (raw, reformat) in data.items():
        assert all(set(e) == {"img_id", "sentences"} and isinstance(e["img_id"], str) for e in raw)
        ids = [e["img_id"] for e in reformat]
        assert len(ids) == len(set(ids)) == len({e["img_id"] for e in raw})
        assert len(ids) == (32 if split == "train" else 8)
        # reformat = raw entries with the same id merged, sentences in raw order
        for entry in reformat:
            assert entry["sentences"] == [s for e in raw if e["img_id"] == entry["img_id"] for s in e["sentences"]]
        assert ids_seen.isdisjoint(ids)
        ids_seen.update(ids)
        for img_id in ids:
            for name in (f"{img_id}.png", f"{img_id}_2.png"):
                image = np.asarray(Image.open(root / "spot-the-diff" / "images" / name))
                assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert any(len(raw) > len(reformat) for raw, reformat in data.values())  # some ids repeat, as in the real files


def test_clevr_layout_and_changes(root):
    data = root / "clevr_change" / "data"
    splits = json.loads((data / "splits.json").read_text())
    assert set(splits) == set(SPLITS) and all(isinstance(i, int) for ids in splits.values() for i in ids)
    change = json.loads((data / "change_captions.json").read_text())
    no_change = json.loads((data / "no_change_captions.json").read_text())
    types = json.loads((data / "type_mapping.json").read_text())
    assert set(types) == {"color", "material", "add", "drop", "move"}
    kind_of = {name: kind for kind, names in types.items() for name in names}
    for number in [i for ids in splits.values() for i in ids]:
        key = f"CLEVR_default_{number:06d}.png"
        assert key in change and no_change[key] == list(NO_CHANGE_CAPTIONS)
        before = np.asarray(Image.open(data / "images" / key)).astype(int)
        after = np.asarray(Image.open(data / "sc_images" / key.replace("default", "semantic"))).astype(int)
        distractor = np.asarray(Image.open(data / "nsc_images" / key.replace("default", "nonsemantic"))).astype(int)
        assert (before != after).any() and (before != distractor).any()
        kind = {"color": "recolour", "add": "add", "drop": "remove", "move": "move"}[kind_of[f"{number:06d}.png"]]
        assert all(KEYWORDS[kind] in c.split() for c in change[key])
        assert not any("no" in c.split() for c in change[key])
    assert types["material"] == [] and min(len(types[k]) for k in ("color", "add", "drop", "move")) > 0


def test_ground_truth_files(root):
    spot_gt = json.loads((root / "gt" / "spot_total_change_captions_reformat.json").read_text())
    raw_test = json.loads((root / "spot-the-diff" / "test.json").read_text())
    assert [im["id"] for im in spot_gt["images"]] == [f"{e['img_id']}.png" for e in raw_test]
    assert [a["id"] for a in spot_gt["annotations"]] == list(range(len(spot_gt["annotations"])))
    clevr_gt = json.loads((root / "gt" / "clevr_total_change_captions_reformat.json").read_text())
    ids = [im["id"] for im in clevr_gt["images"]]
    assert ids[0] == "000000.png" and ids[-1].endswith(".png_n") and len(ids) == 2 * (32 + 8 + 8)


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_deterministic_per_seed(tmp_path):
    write(tmp_path / "a", seed=5, size=8)
    write(tmp_path / "b", seed=5, size=8)
    write(tmp_path / "c", seed=6, size=8)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
