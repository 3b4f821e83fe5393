"""Toy COCO captioning set in the self-critical.pytorch / ORT on-disk formats (for spatial_captioning).

Writes, under ``--out``:

- ``dataset_coco.json``: Karpathy split file (``images`` with filepath, filename, imgid, cocoid, split, sentids,
  sentences[{tokens, raw, imgid, sentid}]); splits train / restval / val / test.
- ``images/{train2014,val2014}/COCO_<dir>_<cocoid:012d>.jpg``: the rendered scenes (the ``IMAGE_ROOT``).
- what the preprocessing scripts make from them, in their formats: ``cocotalk.json`` (ix_to_word, images with
  split, file_path, id, width, height), ``cocotalk_label.h5`` (labels uint32 (M,16), 1-based inclusive
  label_start_ix / label_end_ix, label_length), ``coco-train-{words,idxs}.p`` (CIDEr-D document frequencies),
  ``cocobu_att/<id>.npz`` (``feat`` float32 (K,2048)), ``cocobu_fc/<id>.npy`` (2048,), ``cocobu_box/<id>.npy``
  (K,4 absolute x1,y1,x2,y2) and ``cocobu_box_vec/<id>.npy`` (K,144: the fraction of each 12x12 grid cell, row-major
  with rows = y, that the box covers).
- ``annotations/captions_val2014.json``: the raw captions of every image in the COCO captions format
  (images, annotations{image_id, id, caption}), the reference file of coco-caption's language evaluation.

Each scene holds two objects; its captions state their spatial relation ("a red circle is left of a blue
square"), the object named first being fixed by appearance; the two objects lie in opposite outer thirds of the image
along the relation's axis and in its middle band along the other axis, so the named object's own box tells the
relation word (a simple lookup: in the left third -> "left of"). Region features say what an object is (shape,
colour, size) but not where it is; only the boxes (and so the grid vectors) reveal the relation, so a captioner
without its spatial encoding cannot get the relation words right.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from toydata.scene import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, SceneObject, relation, render, sample_scene

FEAT_DIM = 2048
NUM_GRIDS = 144
MAX_LENGTH = 16
WORD_COUNT_THRESHOLD = 5
CAPTIONS_PER_IMAGE = 5
BACKGROUND_BOXES = 2
IMAGE_SIZES = ((128, 128), (160, 120), (120, 160))
# Words each used by only a handful of captions: they fall under the count threshold and become UNK.
RARE_WORDS = ("today", "clearly", "nicely", "again", "really", "here", "now", "also", "indeed", "still")


def _feature_basis() -> dict[str, np.ndarray]:
    """Fixed random directions (independent of --seed) for every attribute a region feature encodes."""
    rng = np.random.default_rng(20240611)
    names = [f"shape:{s}" for s in SHAPES] + [f"colour:{c}" for c in COLOURS] + [f"size:{s}" for s in SIZES]
    names += [f"bg:{b}" for b in BACKGROUNDS]
    return {n: rng.normal(0.0, 1.0, FEAT_DIM).astype(np.float32) for n in names}


def region_features(rng: np.random.Generator, objects: list[SceneObject], background: str, n_background: int,
                    basis: dict[str, np.ndarray]) -> np.ndarray:
    """(len(objects) + n_background, 2048) non-negative features; position-free by construction."""
    rows = [basis[f"shape:{o.shape}"] + basis[f"colour:{o.colour}"] + 0.5 * basis[f"size:{o.size}"] for o in objects]
    rows += [basis[f"bg:{background}"] for _ in range(n_background)]
    feats = np.stack(rows) + rng.normal(0.0, 0.3, (len(rows), FEAT_DIM)).astype(np.float32)
    # quantised to quarters so the compressed .npz files stay small
    return (np.round(np.maximum(feats, 0.0) * 4) / 4).astype(np.float32)


def background_boxes(rng: np.random.Generator, width: int, height: int, n: int) -> np.ndarray:
    x1 = rng.uniform(0, width * 0.5, n)
    y1 = rng.uniform(0, height * 0.5, n)
    x2 = x1 + rng.uniform(width * 0.3, width * 0.5, n)
    y2 = y1 + rng.uniform(height * 0.3, height * 0.5, n)
    return np.stack([x1, y1, x2, y2], 1).astype(np.float32)


def grid_coverage(boxes: np.ndarray, width: float, height: float, num_grids: int = NUM_GRIDS) -> np.ndarray:
    """(K, g*g): for each box, the fraction of every grid cell it covers; cell index = row * g + col, row = y."""
    g = int(round(num_grids ** 0.5))
    edges = np.arange(g + 1) / g
    out = np.zeros((len(boxes), g, g), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        for r in range(g):
            cover_y = max(0.0, min(y2 / height, edges[r + 1]) - max(y1 / height, edges[r])) * g
            for c in range(g):
                cover_x = max(0.0, min(x2 / width, edges[c + 1]) - max(x1 / width, edges[c])) * g
                out[k, r, c] = cover_y * cover_x
    return out.reshape(len(boxes), g * g)


def _pair_caption(rng: np.random.Generator, scene: Scene, a: SceneObject, b: SceneObject) -> str:
    rel = relation(a, b)
    pa, pb = a.phrase(with_size=False), b.phrase(with_size=False)
    templates = [f"a {pa} is {rel} a {pb}", f"the {pa} is {rel} the {pb}", f"there is a {pa} {rel} a {pb}"]
    if rng.random() < 0.05:  # longer than 16 words: exercises the truncation to --max_length
        return f"in this picture there is a {pa} that is {rel} a {pb} on the {scene.background}"
    return templates[int(rng.integers(len(templates)))]


def across_midline(scene: Scene) -> bool:
    """The two objects lie on opposite sides of the image's midline along their relation's axis."""
    a, b = scene.objects[:2]
    if relation(a, b) in ("left of", "right of"):
        return (a.cx - scene.width / 2) * (b.cx - scene.width / 2) < 0
    return (a.cy - scene.height / 2) * (b.cy - scene.height / 2) < 0


def _place(rng: np.random.Generator, obj: SceneObject, x_band: tuple[float, float], y_band: tuple[float, float],
           width: int, height: int) -> SceneObject:
    """``obj`` moved to a random centre inside the bands (fractions of the image), kept inside the image."""
    lo_x, hi_x = max(x_band[0] * width, obj.radius + 1), min(x_band[1] * width, width - obj.radius - 1)
    lo_y, hi_y = max(y_band[0] * height, obj.radius + 1), min(y_band[1] * height, height - obj.radius - 1)
    return dataclasses.replace(obj, cx=float(rng.uniform(lo_x, hi_x)), cy=float(rng.uniform(lo_y, hi_y)))


def sample_pair_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Two objects in opposite outer thirds of the image along one axis and in the middle band of the other axis
    (side by side, or one above the other). Each object's own box then tells its relation word (the object in the
    left third is the one "left of" the other): one lookup of where the named object lies, which a small model
    learns within a short toy run."""
    scene = sample_scene(rng, width, height, n_objects=(2, 2))
    while len(scene.objects) < 2:
        scene = sample_scene(rng, width, height, n_objects=(2, 2))
    a, b = scene.objects[:2]
    first, second, middle = (0.0, 1 / 3), (2 / 3, 1.0), (3 / 8, 5 / 8)
    if rng.random() < 0.5:  # flip which object takes the first third
        first, second = second, first
    if rng.random() < 0.5:  # side by side
        a, b = _place(rng, a, first, middle, width, height), _place(rng, b, second, middle, width, height)
    else:  # one above the other
        a, b = _place(rng, a, middle, first, width, height), _place(rng, b, middle, second, width, height)
    return dataclasses.replace(scene, objects=(a, b))


def _subject_first(a: SceneObject, b: SceneObject) -> tuple[SceneObject, SceneObject]:
    """The object named first is fixed by appearance (colour, then shape order), never by position."""
    key = (lambda o: (list(COLOURS).index(o.colour), SHAPES.index(o.shape)))
    return (a, b) if key(a) <= key(b) else (b, a)


def scene_captions(rng: np.random.Generator, scene: Scene, rare_budget: dict[str, int]) -> list[str]:
    """Five phrasings of one fact about the two objects: which object is named first follows from how they look,
    the relation word only from where they are."""
    a, b = _subject_first(*scene.objects[:2])
    caps = []
    for _ in range(CAPTIONS_PER_IMAGE):
        cap = _pair_caption(rng, scene, a, b)
        if rng.random() < 0.03:
            word = RARE_WORDS[int(rng.integers(len(RARE_WORDS)))]
            if rare_budget[word] < WORD_COUNT_THRESHOLD:
                rare_budget[word] += 1
                cap = f"{cap} {word}"
        caps.append(cap)
    return caps


def split_names(n: int) -> list[str]:
    n_eval = max(4, n // 10)
    n_restval = n // 10
    return ["val"] * n_eval + ["test"] * n_eval + ["restval"] * n_restval + ["train"] * (n - 2 * n_eval - n_restval)


def build_vocab(images: list[dict]) -> list[str]:
    """Words seen more than WORD_COUNT_THRESHOLD times in first-appearance order, then UNK when any word is rarer."""
    counts: dict[str, int] = {}
    for img in images:
        for sent in img["sentences"]:
            for w in sent["tokens"]:
                counts[w] = counts.get(w, 0) + 1
    vocab = [w for w, n in counts.items() if n > WORD_COUNT_THRESHOLD]
    if any(n <= WORD_COUNT_THRESHOLD for n in counts.values()):
        vocab.append("UNK")
    return vocab


def write_labels(images: list[dict], wtoi: dict[str, int], path: Path) -> None:
    rows, starts, ends, lengths = [], [], [], []
    counter = 1  # 1-based, inclusive ranges (Lua style) into `labels`
    for img in images:
        sents = img["sentences"]
        for s in sents:
            row = np.zeros(MAX_LENGTH, dtype=np.uint32)
            toks = [w if w in wtoi else "UNK" for w in s["tokens"]][:MAX_LENGTH]
            row[: len(toks)] = [wtoi[w] for w in toks]
            rows.append(row)
            lengths.append(len(toks))
        starts.append(counter)
        ends.append(counter + len(sents) - 1)
        counter += len(sents)
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", dtype="uint32", data=np.stack(rows))
        f.create_dataset("label_start_ix", dtype="uint32", data=np.array(starts, dtype=np.uint32))
        f.create_dataset("label_end_ix", dtype="uint32", data=np.array(ends, dtype=np.uint32))
        f.create_dataset("label_length", dtype="uint32", data=np.array(lengths, dtype=np.uint32))


def document_frequencies(images: list[dict], wtoi: dict[str, int]) -> tuple[defaultdict, defaultdict, int]:
    """CIDEr-D n-gram document frequencies over train + restval, as words and as index strings (<eos> = 0).

    defaultdict(float), as self-critical.pytorch pickles them: ruotianluo's CiderD looks unseen n-grams up with [].
    """
    df_words: dict[tuple[str, ...], float] = defaultdict(float)
    df_idxs: dict[tuple[str, ...], float] = defaultdict(float)
    n_images = 0
    for img in images:
        if img["split"] not in ("train", "restval"):
            continue
        n_images += 1
        seen_w, seen_i = set(), set()
        for s in img["sentences"]:
            words = [w if w in wtoi else "UNK" for w in s["tokens"]] + ["<eos>"]
            idxs = [str(wtoi[w]) if w != "<eos>" else "0" for w in words]
            for n in range(1, 5):
                for i in range(len(words) - n + 1):
                    seen_w.add(tuple(words[i:i + n]))
                    seen_i.add(tuple(idxs[i:i + n]))
        for g in seen_w:
            df_words[g] += 1.0
        for g in seen_i:
            df_idxs[g] += 1.0
    return df_words, df_idxs, n_images


def write_coco_annotations(images: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    anns = [{"image_id": img["cocoid"], "id": s["sentid"], "caption": s["raw"]} for img in images for s in img["sentences"]]
    data = {"info": {"description": "vlrepro toy cocotalk"}, "licenses": [], "type": "captions",
            "images": [{"id": img["cocoid"], "file_name": img["filename"]} for img in images], "annotations": anns}
    with open(path, "w") as f:
        json.dump(data, f)


def write(out: Path, seed: int = 0, size: int = 1500) -> None:
    rng = np.random.default_rng(seed)
    basis = _feature_basis()
    out.mkdir(parents=True, exist_ok=True)
    dirs = {name: out / name for name in ("cocobu_att", "cocobu_fc", "cocobu_box", "cocobu_box_vec")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    splits = split_names(size)
    order = rng.permutation(size)
    rare_budget = {w: 0 for w in RARE_WORDS}
    images, talk_images, sentid = [], [], 0
    for imgid in range(size):
        split = splits[order[imgid]]
        width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        scene = sample_pair_scene(rng, width, height)
        cocoid = 100000 + imgid
        folder = "train2014" if split == "train" else "val2014"
        filename = f"COCO_{folder}_{cocoid:012d}.jpg"
        image, _, obj_boxes = render(scene)
        (out / "images" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out / "images" / folder / filename, quality=90)
        caps = scene_captions(rng, scene, rare_budget)
        sents = [{"tokens": c.split(), "raw": c[0].upper() + c[1:] + ".", "imgid": imgid, "sentid": sentid + j}
                 for j, c in enumerate(caps)]
        images.append({"filepath": folder, "filename": filename, "imgid": imgid, "split": split,
                       "sentids": [s["sentid"] for s in sents], "cocoid": cocoid, "sentences": sents})
        sentid += len(sents)
        talk_images.append({"split": split, "file_path": f"{folder}/{filename}", "id": cocoid,
                            "width": width, "height": height})
        boxes = np.concatenate([obj_boxes, background_boxes(rng, width, height, BACKGROUND_BOXES)])
        feats = region_features(rng, list(scene.objects), scene.background, BACKGROUND_BOXES, basis)
        perm = rng.permutation(len(boxes))  # box order carries no information
        boxes, feats = boxes[perm], feats[perm]
        np.savez_compressed(dirs["cocobu_att"] / f"{cocoid}.npz", feat=feats)
        np.save(dirs["cocobu_fc"] / f"{cocoid}.npy", feats.mean(0))
        np.save(dirs["cocobu_box"] / f"{cocoid}.npy", boxes)
        np.save(dirs["cocobu_box_vec"] / f"{cocoid}.npy", grid_coverage(boxes, width, height))
    with open(out / "dataset_coco.json", "w") as f:
        json.dump({"images": images, "dataset": "coco"}, f)
    write_coco_annotations(images, out / "annotations" / "captions_val2014.json")
    vocab = build_vocab(images)
    wtoi = {w: i + 1 for i, w in enumerate(vocab)}
    with open(out / "cocotalk.json", "w") as f:
        json.dump({"ix_to_word": {str(i): w for w, i in wtoi.items()}, "images": talk_images}, f)
    write_labels(images, wtoi, out / "cocotalk_label.h5")
    df_words, df_idxs, ref_len = document_frequencies(images, wtoi)
    for name, df in (("words", df_words), ("idxs", df_idxs)):
        with open(out / f"coco-train-{name}.p", "wb") as f:
            pickle.dump({"document_frequency": df, "ref_len": ref_len}, f, protocol=2)  # self-critical.pytorch's


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1500, help="number of images (all splits)")
    args = parser.parse_args(argv)
    write(args.out, args.seed, args.size)
    print(f"wrote {args.size} images to {os.fspath(args.out)}")


if __name__ == "__main__":
    main()
