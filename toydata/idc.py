"""Toy image-difference captioning data in the Spot-the-Diff and CLEVR-Change on-disk layouts (for clip4idc).

Every pair is a rendered scene (one or two large objects) before and after exactly one change
(toydata.scene.apply_change: add, remove, move or recolour). The CLEVR layout also has, for every pair, a distractor
"after" image: the same scene under a global lighting change (brightness scaled by 0.96-0.98 or 1.02-1.04), standing
in for CLEVR-Change's subtle viewpoint/illumination-only distractors, described by no-change captions.

Written under ``--out``::

    spot-the-diff/images/<img_id>.png, <img_id>_2.png          before / after
    spot-the-diff/{train,val,test}.json                          [{"img_id": "7", "sentences": [...]}, ...] (ids repeat)
    spot-the-diff/reformat_{train,val,test}.json                 one entry per img_id, sentences concatenated in order
    clevr_change/data/images/CLEVR_default_NNNNNN.png   before
    clevr_change/data/sc_images/CLEVR_semantic_NNNNNN.png, nsc_images/CLEVR_nonsemantic_NNNNNN.png
    clevr_change/data/splits.json                       {"train": [int, ...], "val": [...], "test": [...]}
    clevr_change/data/{change,no_change}_captions.json  {"CLEVR_default_NNNNNN.png": [caption, ...]}
    clevr_change/data/type_mapping.json                 {"color"|"material"|"add"|"drop"|"move": ["NNNNNN.png", ...]}
    gt/{spot,clevr}_total_change_captions_reformat.json COCO-format test ground truth
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from toydata.scene import CHANGE_KINDS, Scene, SceneObject, apply_change, render, sample_scene

IMAGE_SIZE = 64
# One or two large objects per "before" scene: at 64x64 the small size (radius 5 px) leaves a shape a few pixels wide,
# and every extra object adds clutter that a from-scratch toy model must learn to ignore before it can compare images.
OBJECTS_PER_SCENE = (1, 2)
OBJECT_SIZE = "large"
SPLITS = ("train", "val", "test")
# Every caption of a change kind holds its keyword; no-change captions hold "no" (see KEYWORDS / NO_CHANGE_WORD).
KEYWORDS = {"add": "added", "remove": "removed", "move": "moved", "recolour": "changed"}
NO_CHANGE_WORD = "no"
CHANGE_TEMPLATES = {
    "add": ("a {size} {colour} {shape} has been added", "someone added a {colour} {shape}",
            "a {colour} {shape} was added to the scene"),
    "remove": ("the {colour} {shape} has been removed", "someone removed the {colour} {shape}",
               "the {size} {colour} {shape} was removed from the scene"),
    "move": ("the {colour} {shape} has moved", "someone moved the {colour} {shape}",
             "the {size} {colour} {shape} moved to a new place"),
    "recolour": ("the {old} {shape} changed to {colour}", "the {shape} changed from {old} to {colour}",
                 "the {old} {shape} has changed colour to {colour}"),
}
NO_CHANGE_CAPTIONS = ("there is no change", "no change was made", "there is no difference")
# RobustChangeCaptioning's type_mapping.json names; "material" has no toy counterpart.
TYPE_NAMES = {"recolour": "color", "add": "add", "remove": "drop", "move": "move"}
GT_INFO = {k: "dummy" for k in ("contributor", "date_created", "description", "url", "version", "year")}


@dataclasses.dataclass
class Pair:
    before: Scene
    after: Scene
    distractor_gain: float
    kind: str
    captions: list[str]


def change_captions(change: dict) -> list[str]:
    obj: SceneObject = change["object"]
    fields = {"size": obj.size, "colour": obj.colour, "shape": obj.shape, "old": change.get("old_colour", "")}
    return [t.format(**fields) for t in CHANGE_TEMPLATES[change["kind"]]]


def lighting_gain(rng: np.random.Generator) -> float:
    """A brightness factor slightly away from 1: the distractor's only (non-semantic) change."""
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.02, 0.04) + 1.0)


def sample_pair(rng: np.random.Generator, kind: str) -> Pair:
    while True:
        # no two objects of the same shape and colour, so captions name one
        before = sample_scene(rng, IMAGE_SIZE, IMAGE_SIZE, n_objects=OBJECTS_PER_SCENE, size=OBJECT_SIZE)
        try:
            after, change = apply_change(before, rng, kind)
        except ValueError:
            continue
        return Pair(before, after, lighting_gain(rng), kind, change_captions(change))


def save_png(scene: Scene, path: Path, gain: float = 1.0) -> None:
    image = render(scene)[0]
    if gain != 1.0:
        image = np.clip(image.astype(np.float32) * gain, 0, 255).round().astype(np.uint8)
    Image.fromarray(image).save(path)


def write_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def coco_gt(entries: list[tuple[str, list[str]]]) -> dict:
    """COCO caption ground truth in the layout of CLIP4IDC's gt/*_total_change_captions_reformat.json."""
    images, annotations = [], []
    for image_id, sentences in entries:
        images.append({"filename": image_id, "id": image_id})
        for c in sentences:
            annotations.append({"caption": c, "id": len(annotations), "image_id": image_id})
    return {"info": GT_INFO, "licenses": GT_INFO, "type": "captions", "images": images, "annotations": annotations}


def reformat(raw: list[dict]) -> list[dict]:
    merged: dict[str, list[str]] = {}
    for item in raw:
        merged.setdefault(item["img_id"], []).extend(item["sentences"])
    return [{"img_id": k, "sentences": v} for k, v in merged.items()]


def split_sizes(size: int) -> dict[str, int]:
    held_out = min(64, max(8, size // 4))
    return {"train": size, "val": held_out, "test": held_out}


def write_spot(root: Path, pairs: dict[str, list[Pair]], rng: np.random.Generator) -> list[dict]:
    """Spot-the-Diff: one to three sentences per pair; about half the pairs split over two raw entries."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    next_id = 1
    test_raw: list[dict] = []
    for split in SPLITS:
        raw: list[dict] = []
        for pair in pairs[split]:
            img_id = str(next_id)
            next_id += 1
            save_png(pair.before, root / "images" / f"{img_id}.png")
            save_png(pair.after, root / "images" / f"{img_id}_2.png")
            n = int(rng.integers(1, 4))
            sentences = [pair.captions[i] for i in rng.permutation(len(pair.captions))[:n]]
            if n > 1 and rng.random() < 0.5:
                raw.append({"img_id": img_id, "sentences": sentences[:1]})
                # The repeated entry lands later in the list, as repeated ids do in the real files.
                raw.insert(int(rng.integers(len(raw), len(raw) + 1 + len(raw) // 4)),
                           {"img_id": img_id, "sentences": sentences[1:]})
            else:
                raw.append({"img_id": img_id, "sentences": sentences})
        write_json(raw, root / f"{split}.json")
        write_json(reformat(raw), root / f"reformat_{split}.json")
        if split == "test":
            test_raw = raw
    return test_raw


def write_spot_gt(gt_dir: Path, test_raw: list[dict]) -> None:
    """gt/spot_total_change_captions_reformat.json from the raw test entries that ``write_spot`` returns (ids
    "<img_id>.png", one image entry per raw entry, as CLIP4IDC's gt/eval_utils.py writes it)."""
    gt_dir.mkdir(parents=True, exist_ok=True)
    write_json(coco_gt([(f"{e['img_id']}.png", e["sentences"]) for e in test_raw]),
               gt_dir / "spot_total_change_captions_reformat.json")


def write_clevr(root: Path, pairs: dict[str, list[Pair]]) -> tuple[dict, dict]:
    for sub in ("images", "sc_images", "nsc_images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[int]] = {}
    change, no_change = {}, {}
    types: dict[str, list[str]] = {"color": [], "material": [], "add": [], "drop": [], "move": []}
    number = 0
    for split in SPLITS:
        splits[split] = []
        for pair in pairs[split]:
            name = f"CLEVR_default_{number:06d}.png"
            save_png(pair.before, root / "images" / name)
            save_png(pair.after, root / "sc_images" / name.replace("default", "semantic"))
            save_png(pair.before, root / "nsc_images" / name.replace("default", "nonsemantic"), pair.distractor_gain)
            change[name] = pair.captions
            no_change[name] = list(NO_CHANGE_CAPTIONS)
            types[TYPE_NAMES[pair.kind]].append(f"{number:06d}.png")
            splits[split].append(number)
            number += 1
    write_json(splits, root / "splits.json")
    write_json(change, root / "change_captions.json")
    write_json(no_change, root / "no_change_captions.json")
    write_json(types, root / "type_mapping.json")
    return change, no_change


def write(out: Path, seed: int = 0, size: int = 1024) -> None:
    """Write both layouts and the ground truth; change kinds are balanced within every split."""
    rng = np.random.default_rng(seed)
    pairs = {
        split: [sample_pair(rng, CHANGE_KINDS[i % len(CHANGE_KINDS)]) for i in range(n)]
        for split, n in split_sizes(size).items()
    }
    test_raw = write_spot(out / "spot-the-diff", pairs, rng)
    change, no_change = write_clevr(out / "clevr_change" / "data", pairs)
    gt_dir = out / "gt"
    write_spot_gt(gt_dir, test_raw)
    # RobustChangeCaptioning's merge_gt_files: change captions of every image, then every no-change caption ("_n").
    clevr_entries = [(k.split("_")[-1], v) for k, v in change.items()]
    clevr_entries += [(k.split("_")[-1] + "_n", v) for k, v in no_change.items()]
    write_json(coco_gt(clevr_entries), gt_dir / "clevr_total_change_captions_reformat.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1024, help="training pairs; val and test get a quarter each, at most 64")
    args = parser.parse_args()
    write(args.out, args.seed, args.size)


if __name__ == "__main__":
    main()
