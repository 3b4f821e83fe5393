"""Toy referring-segmentation data in the refer library's and ReferIt's on-disk layouts (for DMN).

Writes, under ``--out``:

- ``other/refcoco/refs(unc).p`` (pickled list of refs: ``ref_id, ann_id, image_id, category_id, split, file_name,
  sent_ids, sentences[{sent, sent_id, tokens, raw}]``) and ``other/refcoco/instances.json`` (COCO ``images``,
  ``annotations`` with polygon ``segmentation``, ``categories``), splits train / val / testA / testB;
- ``other/images/mscoco/images/train2014/COCO_train2014_<image_id:012d>.jpg``;
- ``referit/images/<imgid>.jpg``, ``referit/mask/<imgid>_<objid>.mat`` (``segimg_t``, object pixels 0),
  ``referit/splits/referit/referit_query_<split>.json`` for train / val / trainval / test;
- ``referit/splits/vocabulary_Gref.txt`` and ``vocabulary_referit.txt`` (starting ``<pad> <go> <eos> <unk>``).

Each image holds 2-4 coloured shapes; a query names one of them by colour and shape, and by position when the
scene holds two objects of the same colour and shape ("left red circle") or as a relation to another object
("red circle left of blue square"). Shape alone is never enough: same-shape distractors of other colours are added.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import pickle
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image
from pycocotools import mask as cocomask

from toydata.scene import COLOURS, RELATIONS, SHAPES, Scene, SceneObject, relation, render, sample_object, sample_scene

COCO_SPLITS = (("train", 0.7), ("val", 0.1), ("testA", 0.1), ("testB", 0.1))
REFERIT_SPLITS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
SPECIAL_TOKENS = ("<pad>", "<go>", "<eos>", "<unk>")
POSITION_WORDS = {"x": ("left", "right"), "y": ("top", "bottom")}
CIRCLE_VERTICES = 48


def vocabulary() -> list[str]:
    words = ["the", "of"] + list(COLOURS) + list(SHAPES) + [w for pair in POSITION_WORDS.values() for w in pair]
    words += [w for rel in RELATIONS for w in rel.split()]
    return list(SPECIAL_TOKENS) + list(dict.fromkeys(words))


def polygon(obj: SceneObject) -> list[float]:
    """The object's outline as a flat COCO polygon [x1, y1, x2, y2, ...] (circles as a 48-gon)."""
    r, cx, cy = obj.radius, obj.cx, obj.cy
    if obj.shape == "circle":
        angles = np.linspace(0, 2 * math.pi, CIRCLE_VERTICES, endpoint=False)
        points = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]
    elif obj.shape == "square":
        points = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    elif obj.shape == "triangle":
        points = [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    else:
        points = [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    return [round(float(v), 2) for p in points for v in p]


def toy_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """A scene where colour matters: a same-shape, other-colour distractor, sometimes an exact duplicate."""
    scene = sample_scene(rng, width, height, n_objects=(1, 2))
    objects = list(scene.objects)
    anchor = objects[int(rng.integers(len(objects)))]
    other_colours = [c for c in COLOURS if not any(o.shape == anchor.shape and o.colour == c for o in objects)]
    extra = sample_object(rng, width, height, objects, shape=anchor.shape,
                          colour=other_colours[int(rng.integers(len(other_colours)))])
    if extra is not None:
        objects.append(extra)
    if rng.random() < 0.4:
        twin = sample_object(rng, width, height, objects, shape=anchor.shape, colour=anchor.colour)
        if twin is not None:
            objects.append(twin)
    return Scene(width, height, scene.background, tuple(objects), scene.texture_seed)


def describe(target: SceneObject, objects: tuple[SceneObject, ...], rng: np.random.Generator) -> list[str]:
    """One or two expressions that pick out ``target`` among ``objects``."""
    twins = [o for o in objects if o is not target and o.shape == target.shape and o.colour == target.colour]
    name = f"{target.colour} {target.shape}"
    if twins:
        twin = twins[0]
        axis = "x" if abs(target.cx - twin.cx) >= abs(target.cy - twin.cy) else "y"
        first = (target.cx < twin.cx) if axis == "x" else (target.cy < twin.cy)
        word = POSITION_WORDS[axis][0 if first else 1]
        return [f"the {word} {name}", f"{word} {name}"]
    sentences = [f"the {name}"]
    unique = [o for o in objects if o is not target
              and sum(p.shape == o.shape and p.colour == o.colour for p in objects) == 1]
    if unique and rng.random() < 0.5:
        other = unique[int(rng.integers(len(unique)))]

        sentences.append(f"{name} {relation(target, other)} the {other.colour} {other.shape}")
    else:
        sentences.append(name)
    return sentences


def assign_splits(count: int, fractions: tuple[tuple[str, float], ...]) -> list[str]:
    names: list[str] = []
    for i, (name, fraction) in enumerate(fractions):
        n = count - len(names) if i == len(fractions) - 1 else max(1, int(round(count * fraction)))
        names += [name] * n
    return names[:count]


def object_mask(obj: SceneObject, height: int, width: int) -> np.ndarray:
    rles = cocomask.frPyObjects([polygon(obj)], height, width)
    return cocomask.decode(rles).max(axis=2)


def write_mat(path: Path, segimg_t: np.ndarray) -> None:
    """A MATLAB 5 file holding ``segimg_t``, with a fixed header text (scipy stamps the creation time)."""
    buffer = io.BytesIO()
    sio.savemat(buffer, {"segimg_t": segimg_t}, do_compression=True)
    data = buffer.getvalue()
    header = b"MATLAB 5.0 MAT-file, written by toydata.refer".ljust(116, b" ")
    path.write_bytes(header + data[116:])


def write_coco(out: Path, rng: np.random.Generator, count: int, width: int, height: int) -> None:
    image_dir = out / "other" / "images" / "mscoco" / "images" / "train2014"
    image_dir.mkdir(parents=True, exist_ok=True)
    refer_dir = out / "other" / "refcoco"
    refer_dir.mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]
    category_of = {s: i + 1 for i, s in enumerate(SHAPES)}
    images, annotations, refs = [], [], []
    ann_id = ref_id = sent_id = 0
    for image_index, split in enumerate(assign_splits(count, COCO_SPLITS)):
        image_id = 1000 + image_index
        scene = toy_scene(rng, width, height)
        image, _, _ = render(scene)
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        Image.fromarray(image).save(image_dir / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for obj in scene.objects:
            ann_id += 1
            ref_id += 1
            x1, y1, x2, y2 = obj.box
            mask = object_mask(obj, height, width)
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": category_of[obj.shape],
                "segmentation": [polygon(obj)], "area": float(mask.sum()),
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)], "iscrowd": 0,
            })
            sentences = []
            for sent in describe(obj, scene.objects, rng):
                sentences.append({"sent": sent, "sent_id": sent_id, "tokens": sent.split(), "raw": sent})
                sent_id += 1
            refs.append({
                "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": category_of[obj.shape],
                "split": split, "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
                "sent_ids": [s["sent_id"] for s in sentences], "sentences": sentences,
            })
    with open(refer_dir / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    with open(refer_dir / "instances.json", "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def write_referit(out: Path, rng: np.random.Generator, count: int, width: int, height: int) -> None:
    root = out / "referit"
    for sub in ("images", "mask", "splits/referit"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    queries: dict[str, dict[str, list[str]]] = {name: {} for name, _ in REFERIT_SPLITS}
    for image_index, split in enumerate(assign_splits(count, REFERIT_SPLITS)):
        image_id = 100 + image_index
        scene = toy_scene(rng, width, height)
        image, _, _ = render(scene)
        Image.fromarray(image).save(root / "images" / f"{image_id}.jpg", quality=95)
        for obj_index, obj in enumerate(scene.objects, start=1):
            name = f"{image_id}_{obj_index}"
            segimg_t = (1 - object_mask(obj, height, width)).astype(np.uint8)  # object pixels are 0
            write_mat(root / "mask" / f"{name}.mat", segimg_t)
            queries[split][name] = describe(obj, scene.objects, rng)
    queries["trainval"] = {**queries["train"], **queries["val"]}
    for split, table in queries.items():
        with open(root / "splits" / "referit" / f"referit_query_{split}.json", "w") as f:
            json.dump(table, f)


def write(out: Path, seed: int = 0, size: int = 240, image_size: int = 128) -> None:
    """``size`` images in the refcoco (UNC) layout and ``size // 4`` in the ReferIt layout."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    write_coco(out, rng, size, image_size, image_size)
    write_referit(out, rng, max(size // 4, 4), image_size, image_size)
    splits = out / "referit" / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    for name in ("vocabulary_Gref.txt", "vocabulary_referit.txt"):
        (splits / name).write_text("\n".join(vocabulary()) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the DMN toy dataset (refer + ReferIt layouts).")
    parser.add_argument("--out", required=True, help="output folder (used as DMN's --data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=240, help="number of refcoco images (ReferIt gets a quarter)")
    parser.add_argument("--image-size", type=int, default=128, help="image width and height in pixels")
    args = parser.parse_args()
    write(Path(args.out), args.seed, args.size, args.image_size)


if __name__ == "__main__":
    main()
