"""Toy ReferIt in ZSGNet's CSV layout (for gin/): ``csv_dir/{train,train_flat,val,test}.csv`` + ``saiapr_tc12_images/``.

Each image holds two pairs of identical objects (same shape and colour within a pair, pairs differ). An expression
names one object as "<position> <colour> <shape>" (or "<colour> <shape> on the <position>"), e.g. "left red circle":
the colour/shape word picks the pair and the position (left/right/top/bottom, along the pair's dominant axis) picks the
member; twins lie on opposite sides of the image centre along that axis. All four objects play symmetric
roles, so without the expression a model can do no better than picking one of the four at random (0.25).

Format (as the original's data/prepare_referit.py + flatten_train.py write it): columns ``img_id,bbox,query``;
``img_id`` "<id>.jpg"; ``bbox`` "[x1, y1, x2, y2]" in pixels (continuous corners); ``query`` a list literal of phrases
in train.csv, one phrase per row in train_flat.csv, val.csv and test.csv. Images are JPEGs of ``--width`` x ``--height``.

    python -m toydata.zsgnet_csv --out DIR [--seed S --size N]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from toydata.scene import COLOURS, SHAPES, Scene, SceneObject, relation, render, sample_object

POSITION = {"left of": "left", "right of": "right", "above": "top", "below": "bottom"}
FIRST_ID = 1000


def sample_pairs(rng: np.random.Generator, width: int, height: int) -> Scene | None:
    """Two pairs of identical objects (the pairs differ in shape or colour); None when they did not fit."""
    kinds: list[tuple[str, str]] = []
    while len(kinds) < 2:
        kind = (SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))])
        if kind not in kinds:
            kinds.append(kind)
    objects: list[SceneObject] = []
    for shape, colour in kinds:
        first = sample_object(rng, width, height, objects, shape=shape, colour=colour)
        if first is None:
            return None
        objects.append(first)
        for _ in range(100):
            twin = sample_object(rng, width, height, objects, shape=shape, colour=colour)
            if twin is not None and well_separated(first, twin, width, height):
                objects.append(twin)
                break
        else:
            return None
    background = ("grass", "water", "sand", "snow")[rng.integers(4)]
    return Scene(width, height, background, tuple(objects), int(rng.integers(2**31)))


def well_separated(a: SceneObject, b: SceneObject, width: int, height: int) -> bool:
    """The twins lie on opposite sides of the image's centre line across their dominant axis, each at least 10% of
    the image away from it, so "left"/"right" (or "top"/"bottom") is clear at a glance."""
    if abs(a.cx - b.cx) >= abs(a.cy - b.cy):
        da, db, size = a.cx - width / 2, b.cx - width / 2, width
    else:
        da, db, size = a.cy - height / 2, b.cy - height / 2, height
    return da * db < 0 and min(abs(da), abs(db)) >= 0.1 * size


def expression(target: SceneObject, twin: SceneObject, rng: np.random.Generator) -> list[str]:
    """Two phrasings naming ``target`` against its identical ``twin``."""
    pos = POSITION[relation(target, twin)]
    name = target.phrase(with_size=False)
    phrasings = [f"{pos} {name}", f"{name} on the {pos}"]
    return [phrasings[i] for i in rng.permutation(2)]


def box_text(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):.2f}" for v in box) + "]"


def write_split(rng: np.random.Generator, n_images: int, first_id: int, img_dir: Path, width: int, height: int) -> list[dict]:
    rows: list[dict] = []
    image_id = first_id
    while image_id < first_id + n_images:
        scene = sample_pairs(rng, width, height)
        if scene is None:
            continue
        image, _, boxes = render(scene)
        name = f"{image_id}.jpg"
        Image.fromarray(image).save(img_dir / name, quality=95)
        # One referred object per pair; the twin is the pair's other member.
        for pair in (0, 1):
            member = int(rng.integers(2))
            target, twin = scene.objects[2 * pair + member], scene.objects[2 * pair + 1 - member]
            rows.append({"img_id": name, "bbox": box_text(boxes[2 * pair + member]), "query": expression(target, twin, rng)})
        image_id += 1
    return rows


def flatten(rows: list[dict]) -> list[dict]:
    """One row per phrase (the original's data/flatten_train.py)."""
    return [{**r, "query": q} for r in rows for q in r["query"]]


def write(out: Path, seed: int = 0, size: int = 600, width: int = 160, height: int = 120) -> None:
    """``size`` training images, ``size // 5`` validation and test images each."""
    rng = np.random.default_rng(seed)
    img_dir, csv_dir = out / "saiapr_tc12_images", out / "csv_dir"
    img_dir.mkdir(parents=True, exist_ok=True)
    csv_dir.mkdir(parents=True, exist_ok=True)
    n_eval = max(size // 5, 1)
    train = write_split(rng, size, FIRST_ID, img_dir, width, height)
    val = write_split(rng, n_eval, FIRST_ID + size, img_dir, width, height)
    test = write_split(rng, n_eval, FIRST_ID + size + n_eval, img_dir, width, height)
    columns = ["img_id", "bbox", "query"]
    pd.DataFrame(train, columns=columns).assign(query=lambda d: d["query"].map(repr)).to_csv(csv_dir / "train.csv", index=False)
    pd.DataFrame(flatten(train), columns=columns).to_csv(csv_dir / "train_flat.csv", index=False)
    # Original prep: validation and test rows carry one phrase each.
    pd.DataFrame(flatten(val), columns=columns).to_csv(csv_dir / "val.csv", index=False)
    pd.DataFrame(flatten(test), columns=columns).to_csv(csv_dir / "test.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=600, help="number of training images (val/test get size // 5)")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    args = parser.parse_args()
    write(args.out, args.seed, args.size, args.width, args.height)
    print(f"wrote toy ReferIt-format CSVs and images to {args.out}")


if __name__ == "__main__":
    main()
