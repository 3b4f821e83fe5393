"""Grid vectors of the bottom-up boxes: for each box, how much of every cell of a g x g image grid it covers.

    python prepro_areas.py --input_json data/dataset_coco.json --images_root IMAGE_ROOT \
        --input_dir data/cocobu_box --output_dir data/cocobu_box_vec --num_grids 144

Writes <output_dir>/<cocoid>.npy float32 (K, num_grids), row k for box k of <input_dir>/<cocoid>.npy. The
original script was never published; the convention chosen here: boxes are normalised by the image's width and
height (read from the image file, or from width/height in a cocotalk.json), the image is split into g x g
equal cells, and entry [r * g + c] is the fraction of cell (row r = y, column c = x) the box covers, in [0, 1].
The model sums this (g, g) map over columns (vertical profile) and rows (horizontal profile).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys

import numpy as np

log = logging.getLogger("prepro_areas")


def axis_coverage(lo: np.ndarray, hi: np.ndarray, g: int) -> np.ndarray:
    """(K, g): the fraction of each of g equal intervals of [0, 1] that [lo, hi] covers."""
    edges = np.arange(g + 1, dtype=np.float64) / g
    overlap = np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1])
    return np.clip(overlap, 0.0, None) * g


def grid_vectors(boxes: np.ndarray, width: float, height: float, num_grids: int) -> np.ndarray:
    """(K, num_grids) float32 coverage fractions, row-major with rows = y."""
    g = math.isqrt(num_grids)
    if g * g != num_grids:
        raise SystemExit(f"prepro_areas: --num_grids {num_grids} is not a perfect square")
    boxes = boxes.astype(np.float64)
    cov_x = axis_coverage(boxes[:, 0] / width, boxes[:, 2] / width, g)
    cov_y = axis_coverage(boxes[:, 1] / height, boxes[:, 3] / height, g)
    return (cov_y[:, :, None] * cov_x[:, None, :]).reshape(len(boxes), num_grids).astype(np.float32)


def image_size(img: dict, images_root: str) -> tuple[int, int]:
    if "width" in img and "height" in img:
        return img["width"], img["height"]
    path = os.path.join(images_root, img["filepath"], img["filename"]) if "filename" in img \
        else os.path.join(images_root, img["file_path"])
    if not os.path.isfile(path):
        raise SystemExit(f"prepro_areas: image {path} not found (set --images_root to the folder holding "
                         "train2014/ and val2014/)")
    from PIL import Image
    with Image.open(path) as im:  # reads the header only
        return im.size


def main(params: dict) -> None:
    if not os.path.isfile(params["input_json"]):
        raise SystemExit(f"prepro_areas: --input_json {params['input_json']} not found")
    with open(params["input_json"]) as f:
        imgs = json.load(f)["images"]
    os.makedirs(params["output_dir"], exist_ok=True)
    for img in imgs:
        cid = img.get("cocoid", img.get("id"))
        box_path = os.path.join(params["input_dir"], f"{cid}.npy")
        if not os.path.isfile(box_path):
            raise SystemExit(f"prepro_areas: {box_path} not found (run scripts/make_bu_data.py first)")
        width, height = image_size(img, params["images_root"])
        vec = grid_vectors(np.load(box_path), width, height, params["num_grids"])
        np.save(os.path.join(params["output_dir"], f"{cid}.npy"), vec)
    log.info("wrote %d grid vector files to %s", len(imgs), params["output_dir"])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input_json", default="data/dataset_coco.json", help="Karpathy json (or cocotalk.json)")
    p.add_argument("--images_root", default="", help="folder with train2014/ and val2014/ (image sizes)")
    p.add_argument("--input_dir", default="data/cocobu_box", help="<cocoid>.npy boxes from make_bu_data.py")
    p.add_argument("--output_dir", default="data/cocobu_box_vec")
    p.add_argument("--num_grids", type=int, default=144, help="g*g cells (144 = 12x12)")
    return p


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    main(vars(get_parser().parse_args()))
