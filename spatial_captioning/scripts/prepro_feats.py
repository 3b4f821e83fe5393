"""ResNet grid features of the COCO images (for grid-feature models; the spatial model uses bottom-up features).

    python scripts/prepro_feats.py --input_json data/dataset_coco.json --output_dir data/cocotalk \
        --images_root IMAGE_ROOT

Writes <output_dir>_fc/<cocoid>.npy (2048,) and <output_dir>_att/<cocoid>.npz (feat (14, 14, 2048)).
Weights: <model_root>/<model>.pth (the converted resnet101.pth linked in the README).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from misc.resnet_features import GridFeatureExtractor  # noqa: E402

log = logging.getLogger("prepro_feats")


def main(params: dict) -> None:
    if not os.path.isfile(params["input_json"]):
        raise SystemExit(f"prepro_feats: --input_json {params['input_json']} not found")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        extractor = GridFeatureExtractor(params["model"], params["model_root"], params["att_size"]).to(device).eval()
    except FileNotFoundError as err:
        raise SystemExit(f"prepro_feats: {err}") from None
    with open(params["input_json"]) as f:
        imgs = json.load(f)["images"]
    dir_fc, dir_att = params["output_dir"] + "_fc", params["output_dir"] + "_att"
    os.makedirs(dir_fc, exist_ok=True)
    os.makedirs(dir_att, exist_ok=True)
    for img in tqdm(imgs, disable=not sys.stderr.isatty()):
        path = os.path.join(params["images_root"], img["filepath"], img["filename"])
        if not os.path.isfile(path):
            raise SystemExit(f"prepro_feats: image {path} not found (check --images_root)")
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
        fc, att = extractor(image)
        np.save(os.path.join(dir_fc, str(img["cocoid"])), fc.float().cpu().numpy())
        np.savez_compressed(os.path.join(dir_att, str(img["cocoid"])), feat=att.float().cpu().numpy())
    log.info("wrote %s_{fc,att} for %d images", params["output_dir"], len(imgs))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input_json", required=True, help="Karpathy dataset_coco.json")
    p.add_argument("--output_dir", default="data", help="prefix of the _fc/_att folders")
    p.add_argument("--images_root", default="", help="folder holding train2014/ and val2014/")
    p.add_argument("--att_size", default=14, type=int, help="14x14 or 7x7")
    p.add_argument("--model", default="resnet101", type=str, help="resnet101, resnet152")
    p.add_argument("--model_root", default="./data/imagenet_weights", type=str, help="folder with <model>.pth")
    return p


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    main(vars(get_parser().parse_args()))
