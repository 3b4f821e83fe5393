"""Toy COCO captioning set in the on-disk formats DIFNet reads (M² annotations, grid hdf5, segmentation .npy).

    python -m toydata.coco_grid --out DIR [--seed S --size N]

writes, for N images of two coloured shapes on a textured scene (grass/water/sand/snow):

    DIR/annotations/captions_train2014.json, captions_val2014.json   COCO caption format
    DIR/annotations/coco_{train,restval,dev,test}_ids.npy             Karpathy split: int64 *annotation* ids
    DIR/coco_grid_feats2.hdf5                                         '<image_id>_features' (49, 2048) float32
    DIR/segmentations/{train2014,val2014}/<image_id>.npy              (133, 7, 7) float32 class area fractions
    DIR/images/{train2014,val2014}/COCO_<split>_<image_id:012d>.jpg   the rendered images (112 x 112)

Train images live in the train json; restval, dev (validation) and test images in the val json, as in COCO.
Five captions per image, e.g. "a small red circle left of a large blue square on grass".

What each input reveals (so the toy task needs DIFNet's key idea, the segmentation flow):
* grid features: per 16-pixel cell, the coverage-weighted colour, shape, size, row and column codes of the objects
  (sparse blocks of the 2048 dims); the background is absent, so attributes and relations are learnable from
  the grid but the scene word is not;
* segmentation: per-cell area fractions of one panoptic "thing" class per shape and one "stuff" class per scene
  (detectron2's COCO panoptic order: grass -> grass-merged 125, water -> water-other 113, sand 102, snow 105):
  the scene word is present only here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from toydata.scene import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, relation, render, sample_scene

IMAGE_SIZE = 112
GRID = 7
CELL = IMAGE_SIZE // GRID
D_FEATURE = 2048
N_SEG_CLASSES = 133
BLOCK = 16
SHAPE_CLASS = {"circle": 32, "square": 62, "triangle": 33, "diamond": 29}  # sports ball, tv, kite, frisbee
SCENE_CLASS = {"grass": 125, "water": 113, "sand": 102, "snow": 105}
# feature layout: one 16-dim block per colour, shape, size, row and column value
_OFFSETS = {}
_start = 0
for _name, _values in (("colour", list(COLOURS)), ("shape", list(SHAPES)), ("size", list(SIZES)),
                       ("row", list(range(GRID))), ("col", list(range(GRID)))):
    for _v in _values:
        _OFFSETS[(_name, _v)] = _start
        _start += BLOCK
assert _start <= D_FEATURE and set(SCENE_CLASS) == set(BACKGROUNDS)


def captions(scene: Scene) -> list[str]:
    """Five references; the left-most object comes first, the relation is relation(first, second)."""
    a, b = sorted(scene.objects, key=lambda o: o.cx)
    rel, bg = relation(a, b), scene.background
    return [
        f"a {a.size} {a.colour} {a.shape} {rel} a {b.size} {b.colour} {b.shape} on {bg}",
        f"a {a.colour} {a.shape} {rel} a {b.colour} {b.shape} on {bg}",
        f"a {a.colour} {a.shape} {rel} a {b.colour} {b.shape} on the {bg}.",
        f"The {a.colour} {a.shape} is {rel} the {b.colour} {b.shape} on {bg}",
        f"A {a.colour} {a.shape} and a {b.colour} {b.shape} on the {bg}",
    ]


def _cell_fractions(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (7, 7) fraction of each cell covered."""
    return mask.reshape(GRID, CELL, GRID, CELL).mean(axis=(1, 3))


def grid_features(scene: Scene, masks: np.ndarray, rng: np.random.Generator, gains: np.ndarray) -> np.ndarray:
    """(49, 2048) float32, rows in row-major cell order; zero where no object is."""
    feats = np.zeros((GRID, GRID, D_FEATURE), dtype=np.float32)
    for obj, mask in zip(scene.objects, masks):
        cover = _cell_fractions(mask)
        for r, c in zip(*np.nonzero(cover)):
            for key in (("colour", obj.colour), ("shape", obj.shape), ("size", obj.size), ("row", r), ("col", c)):
                start = _OFFSETS[key]
                noise = rng.normal(0.0, 0.05, BLOCK)
                feats[r, c, start:start + BLOCK] += cover[r, c] * np.maximum(gains[start:start + BLOCK] + noise, 0)
    return feats.reshape(GRID * GRID, D_FEATURE)


def segmentation(scene: Scene, masks: np.ndarray) -> np.ndarray:
    """(133, 7, 7) float32: per class, the fraction of each cell it covers (the authors' recipe: a panoptic map,
    one binary map per class, average-pooled to 7 x 7)."""
    seg = np.zeros((N_SEG_CLASSES, GRID, GRID), dtype=np.float32)
    objects_mask = np.zeros(masks.shape[1:], dtype=bool)
    for obj, mask in zip(scene.objects, masks):
        seg[SHAPE_CLASS[obj.shape]] += _cell_fractions(mask)
        objects_mask |= mask
    seg[SCENE_CLASS[scene.background]] = _cell_fractions(~objects_mask)
    return seg


def _split_sizes(size: int) -> dict[str, int]:
    held_out = max(size // 10, 1)
    return {"train": size - 3 * held_out, "restval": held_out, "dev": held_out, "test": held_out}


def write(out: Path, seed: int = 0, size: int = 600) -> None:
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.5, 1.5, D_FEATURE).astype(np.float32)
    sizes = _split_sizes(size)
    if sizes["train"] < 1:
        raise SystemExit(f"--size {size} is too small: need at least 4 images")
    ann_dir = out / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    jsons = {folder: {"info": {"description": "vlrepro toy COCO captions"}, "licenses": [], "type": "captions",
                      "images": [], "annotations": []} for folder in ("train2014", "val2014")}
    split_ids: dict[str, list[int]] = {name: [] for name in sizes}
    image_id = 9  # COCO-like, globally unique ids
    with h5py.File(out / "coco_grid_feats2.hdf5", "w") as h5:
        for split, count in sizes.items():
            folder = "train2014" if split == "train" else "val2014"
            (out / "segmentations" / folder).mkdir(parents=True, exist_ok=True)
            (out / "images" / folder).mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                image_id += int(rng.integers(1, 20))
                scene = sample_scene(rng, IMAGE_SIZE, IMAGE_SIZE, n_objects=(2, 2))
                image, masks, _ = render(scene)
                file_name = f"COCO_{folder}_{image_id:012d}.jpg"
                Image.fromarray(image).save(out / "images" / folder / file_name, quality=90)
                h5.create_dataset(f"{image_id}_features", data=grid_features(scene, masks, rng, gains),
                                  compression="gzip", compression_opts=1, chunks=(GRID * GRID, D_FEATURE),
                                  track_times=False)
                np.save(out / "segmentations" / folder / f"{image_id}.npy", segmentation(scene, masks))
                jsons[folder]["images"].append({"id": image_id, "file_name": file_name, "width": IMAGE_SIZE,
                                                "height": IMAGE_SIZE})
                for k, caption in enumerate(captions(scene)):
                    ann_id = image_id * 10 + k
                    jsons[folder]["annotations"].append({"id": ann_id, "image_id": image_id, "caption": caption})
                    split_ids[split].append(ann_id)
    for folder, data in jsons.items():
        with open(ann_dir / f"captions_{folder}.json", "w") as f:
            json.dump(data, f)
    for split, ids in split_ids.items():
        np.save(ann_dir / f"coco_{split}_ids.npy", np.array(ids, dtype=np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=600, help="number of images (5 captions each)")
    args = parser.parse_args()
    write(args.out, args.seed, args.size)


if __name__ == "__main__":
    main()
