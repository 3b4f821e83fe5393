"""Karpathy dataset_coco.json -> cocotalk.json (vocabulary, image info) + cocotalk_label.h5 (encoded captions).

    python scripts/prepro_labels.py --input_json data/dataset_coco.json --output_json data/cocotalk.json \
        --output_h5 data/cocotalk

Words seen at most --word_count_threshold times become UNK. The vocabulary keeps the order in which words are
first seen (Python 3 dict order), then UNK. labels: uint32 (M, max_length), 0-padded; label_start_ix /
label_end_ix: 1-based inclusive caption ranges per image; label_length: min(max_length, len).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import h5py
import numpy as np

log = logging.getLogger("prepro_labels")


def build_vocab(imgs: list[dict], count_thr: int) -> tuple[list[str], dict[str, int]]:
    counts: dict[str, int] = {}
    for img in imgs:
        for sent in img["sentences"]:
            for w in sent["tokens"]:
                counts[w] = counts.get(w, 0) + 1
    vocab = [w for w, n in counts.items() if n > count_thr]
    bad = sum(n for n in counts.values() if n <= count_thr)
    total = sum(counts.values())
    log.info("%d words, %d in vocabulary, %d/%d UNK tokens (%.2f%%)", len(counts), len(vocab), bad, total,
             100.0 * bad / max(total, 1))
    if bad > 0:
        vocab.append("UNK")  # only added when some word is rare, as the original
    return vocab, counts


def encode_captions(imgs: list[dict], wtoi: dict[str, int], max_length: int):
    """(labels (M, max_length), label_start_ix (N,), label_end_ix (N,), label_length (M,)) as uint32."""
    n_imgs = len(imgs)
    n_caps = sum(len(img["sentences"]) for img in imgs)
    labels = np.zeros((n_caps, max_length), dtype=np.uint32)
    start = np.zeros(n_imgs, dtype=np.uint32)
    end = np.zeros(n_imgs, dtype=np.uint32)
    length = np.zeros(n_caps, dtype=np.uint32)
    unk = wtoi.get("UNK")
    row = 0
    for i, img in enumerate(imgs):
        sents = img["sentences"]
        if not sents:
            raise SystemExit(f"prepro_labels: image {img.get('cocoid', i)} has no captions")
        start[i] = row + 1
        for sent in sents:
            ids = [wtoi.get(w, unk) for w in sent["tokens"][:max_length]]
            labels[row, :len(ids)] = ids
            length[row] = len(ids)
            row += 1
        end[i] = row
    if not (length > 0).all():
        raise SystemExit("prepro_labels: some caption has no words")
    return labels, start, end, length


def image_entries(imgs: list[dict], images_root: str) -> list[dict]:
    out = []
    for img in imgs:
        entry = {"split": img["split"]}
        if "filename" in img:
            entry["file_path"] = os.path.join(img["filepath"], img["filename"])
        if "cocoid" in img:
            entry["id"] = img["cocoid"]
        if images_root:
            from PIL import Image
            with Image.open(os.path.join(images_root, img["filepath"], img["filename"])) as im:
                entry["width"], entry["height"] = im.size
        out.append(entry)
    return out


def main(params: dict) -> None:
    if not os.path.isfile(params["input_json"]):
        raise SystemExit(f"prepro_labels: {params['input_json']} not found (download caption_datasets.zip: "
                         "'make spatial_captioning-data')")
    with open(params["input_json"]) as f:
        imgs = json.load(f)["images"]
    vocab, _ = build_vocab(imgs, params["word_count_threshold"])
    itow = {i + 1: w for i, w in enumerate(vocab)}
    wtoi = {w: i + 1 for i, w in enumerate(vocab)}
    labels, start, end, length = encode_captions(imgs, wtoi, params["max_length"])
    h5_path = params["output_h5"] + "_label.h5"
    tmp = h5_path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.create_dataset("labels", dtype="uint32", data=labels)
        f.create_dataset("label_start_ix", dtype="uint32", data=start)
        f.create_dataset("label_end_ix", dtype="uint32", data=end)
        f.create_dataset("label_length", dtype="uint32", data=length)
    os.replace(tmp, h5_path)
    out = {"ix_to_word": itow, "images": image_entries(imgs, params["images_root"])}
    with open(params["output_json"] + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(params["output_json"] + ".tmp", params["output_json"])
    log.info("wrote %s and %s (%d images, %d captions)", params["output_json"], h5_path, len(imgs), len(labels))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input_json", required=True, help="Karpathy dataset_coco.json")
    p.add_argument("--output_json", default="data.json")
    p.add_argument("--output_h5", default="data", help="prefix; writes <prefix>_label.h5")
    p.add_argument("--images_root", default="", help="if set, record each image's width and height")
    p.add_argument("--max_length", default=16, type=int, help="captions are cut to this many words")
    p.add_argument("--word_count_threshold", default=5, type=int, help="words seen <= this often become UNK")
    return p


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    main(vars(get_parser().parse_args()))
