"""The toy ReferIt writer for gin/, read back with a small reader written from the ZSGNet CSV format."""
import ast
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from toydata.scene import COLOURS, SHAPES
from toydata.zsgnet_csv import write


def read_split(root: Path, name: str) -> pd.DataFrame:
    df = pd.read_csv(root / "csv_dir" / f"{name}.csv")
    assert list(df.columns) == ["img_id", "bbox", "query"]
    df["bbox"] = df["bbox"].apply(ast.literal_eval)
    return df


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zsg")
    write(out, seed=5, size=30)
    return out


def test_layout_columns_and_splits(toy):
    assert sorted(p.name for p in (toy / "csv_dir").iterdir()) == ["test.csv", "train.csv", "train_flat.csv", "val.csv"]
    train, flat = read_split(toy, "train"), read_split(toy, "train_flat")
    lists = train["query"].apply(ast.literal_eval)
    assert all(isinstance(q, list) and len(q) == 2 for q in lists)
    # train_flat = one row per phrase of train.csv, in order (flatten_train.py).
    assert flat["query"].tolist() == [q for qs in lists for q in qs]
    assert flat["img_id"].tolist() == [i for i, qs in zip(train["img_id"], lists) for _ in qs]
    val, test = read_split(toy, "val"), read_split(toy, "test")
    assert len(train) == 2 * 30 and len(val) == 2 * 2 * 6 and len(test) == len(val)
    ids = [set(d["img_id"]) for d in (train, val, test)]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
    assert all(i.endswith(".jpg") and i[:-4].isdigit() for i in ids[0])


def test_boxes_lie_on_the_named_object(toy):
    df = read_split(toy, "val")
    for _, row in df.iterrows():
        img = np.asarray(Image.open(toy / "saiapr_tc12_images" / row["img_id"]).convert("RGB")).astype(float)
        assert img.shape == (120, 160, 3)
        x1, y1, x2, y2 = row["bbox"]
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
        words = row["query"].split()
        colour = next(w for w in words if w in COLOURS)
        assert any(w in SHAPES for w in words) and words[0] in ("left", "right", "top", "bottom") or words[-1] in (
            "left", "right", "top", "bottom")
        centre = img[int((y1 + y2) / 2), int((x1 + x2) / 2)]
        nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - centre).sum())
        assert nearest == colour


def test_position_word_picks_the_member_of_the_pair(toy):
    """Find the identical twin (the one other blob of the named colour) and check the position word against it."""
    from scipy import ndimage

    checked = 0
    for split in ("val", "test"):
        for row in read_split(toy, split).itertuples():
            img = np.asarray(Image.open(toy / "saiapr_tc12_images" / row.img_id).convert("RGB")).astype(float)
            words = row.query.split()
            colour = next(w for w in words if w in COLOURS)
            pos = words[0] if words[0] in ("left", "right", "top", "bottom") else words[-1]
            mask = np.abs(img - np.array(COLOURS[colour])).sum(-1) < 60
            x1, y1, x2, y2 = row.bbox
            mask[max(int(y1) - 2, 0): int(y2) + 3, max(int(x1) - 2, 0): int(x2) + 3] = False
            labels, n = ndimage.label(mask)
            blobs = [np.argwhere(labels == k) for k in range(1, n + 1)]
            blobs = [b for b in blobs if len(b) > 30]
            if len(blobs) != 1:  # the other pair shares the colour: the twin is not identifiable by colour alone
                continue
            ty, tx = blobs[0].mean(0)
            cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
            expected = {"left": cx < tx, "right": cx > tx, "top": cy < ty, "bottom": cy > ty}[pos]
            assert expected, (row.img_id, row.query)
            checked += 1
    assert checked >= 10


def test_deterministic_per_seed(tmp_path):
    write(tmp_path / "a", seed=1, size=5)
    write(tmp_path / "b", seed=1, size=5)
    write(tmp_path / "c", seed=2, size=5)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
