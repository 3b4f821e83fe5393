"""Bottom-up-attention TSVs -> per-image feature files.

    python scripts/make_bu_data.py --output_dir data/cocobu

Reads the four Karpathy-split TSVs under --downloaded_feats (data/bu_data): fields image_id, image_w, image_h,
num_boxes, boxes, features (base64 float32). Writes <output_dir>_att/<id>.npz (feat (K, 2048)),
<output_dir>_fc/<id>.npy (mean feature, (2048,)) and <output_dir>_box/<id>.npy ((K, 4) x1, y1, x2, y2 pixels).
"""
from __future__ import annotations

import argparse
import base64
import csv
import logging
import os
import sys

import numpy as np

log = logging.getLogger("make_bu_data")
FIELDNAMES = ["image_id", "image_w", "image_h", "num_boxes", "boxes", "features"]
INFILES = ["trainval/karpathy_test_resnet101_faster_rcnn_genome.tsv",
           "trainval/karpathy_val_resnet101_faster_rcnn_genome.tsv",
           "trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.0",
           "trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.1"]


def decode(field: str, num_boxes: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(field), dtype=np.float32).reshape(num_boxes, -1)


def convert(tsv_path: str, output_dir: str) -> int:
    count = 0
    with open(tsv_path, newline="") as f:  # text mode: the original's "r+b" fails on Python 3
        for item in csv.DictReader(f, delimiter="\t", fieldnames=FIELDNAMES):
            image_id, k = int(item["image_id"]), int(item["num_boxes"])
            feats, boxes = decode(item["features"], k), decode(item["boxes"], k)
            np.savez_compressed(os.path.join(output_dir + "_att", str(image_id)), feat=feats)
            np.save(os.path.join(output_dir + "_fc", str(image_id)), feats.mean(0))
            np.save(os.path.join(output_dir + "_box", str(image_id)), boxes)
            count += 1
    return count


def main(args: argparse.Namespace) -> None:
    csv.field_size_limit(sys.maxsize)
    paths = [os.path.join(args.downloaded_feats, name) for name in INFILES]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"make_bu_data: {missing[0]} not found (unzip trainval.zip into {args.downloaded_feats}; "
                         "see 'make spatial_captioning-data')")
    for suffix in ("_att", "_fc", "_box"):
        os.makedirs(args.output_dir + suffix, exist_ok=True)
    for path in paths:
        log.info("reading %s", path)
        log.info("%d images", convert(path, args.output_dir))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--downloaded_feats", default="data/bu_data", help="folder holding trainval/")
    p.add_argument("--output_dir", default="data/cocobu", help="prefix of the _att/_fc/_box folders")
    return p


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    main(get_parser().parse_args())
