"""Caption a folder of raw images (eval.py --image_folder): ResNet grid features computed on the fly.

Each of the att_size x att_size feature cells is treated as a box, so the spatial model gets the grid vector of
that cell (prepro_areas.py's convention). A model trained on bottom-up features sees different features here,
as in the original's raw-image mode.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
from PIL import Image

from dataloader import DataError
from misc.resnet_features import GridFeatureExtractor
from prepro_areas import grid_vectors

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")


def cell_boxes(att_size: int) -> np.ndarray:
    """(att_size^2, 4) boxes of the feature cells in a unit image, row-major."""
    edges = np.arange(att_size + 1, dtype=np.float32) / att_size
    ys, xs = np.meshgrid(np.arange(att_size), np.arange(att_size), indexing="ij")
    return np.stack([edges[xs], edges[ys], edges[xs + 1], edges[ys + 1]], -1).reshape(-1, 4)


class DataLoaderRaw:
    def __init__(self, opt: argparse.Namespace, att_size: int = 14):
        self.opt = opt
        self.batch_size = opt.batch_size
        self.seq_per_img = 1
        if opt.coco_json:
            with open(opt.coco_json) as f:
                entries = json.load(f)["images"]
            self.files = [(os.path.join(opt.image_folder, e["file_name"]), e["id"]) for e in entries]
        else:
            if not os.path.isdir(opt.image_folder):
                raise DataError(f"--image_folder {opt.image_folder} is not a directory")
            names = sorted(n for n in os.listdir(opt.image_folder) if n.lower().endswith(IMAGE_EXTENSIONS))
            # Ids are the strings "1", "2", ... as the original's loader wrote them (it listed files in os.walk
            # order; sorted names here, so runs are repeatable).
            self.files = [(os.path.join(opt.image_folder, n), str(i + 1)) for i, n in enumerate(names)]
        if opt.num_images >= 0:
            self.files = self.files[:opt.num_images]
        if not self.files:
            raise DataError(f"no images found in {opt.image_folder}")
        device = torch.device("cuda" if opt.device == "cuda" and torch.cuda.is_available() else "cpu")
        self.extractor = GridFeatureExtractor(opt.cnn_model, opt.cnn_weight_dir, att_size, allow_random=True).to(device).eval()
        self.grid = None
        if opt.use_grid:
            self.grid = torch.from_numpy(grid_vectors(cell_boxes(att_size), 1.0, 1.0, opt.num_grids))
        self.ix_to_word: dict[str, str] = {}

    def get_vocab(self) -> dict[str, str]:
        return self.ix_to_word

    def set_vocab(self, vocab: dict[str, str]) -> None:
        self.ix_to_word = vocab

    def get_seq_per_img(self) -> int:
        return 1

    def __iter__(self):
        for s in range(0, len(self.files), self.batch_size):
            chunk = self.files[s:s + self.batch_size]
            atts = []
            for path, _ in chunk:
                with Image.open(path) as im:
                    _, att = self.extractor(np.asarray(im.convert("RGB")))
                atts.append(att.reshape(-1, att.shape[-1]).float().cpu())
            feats = torch.stack(atts)
            yield {"img_feats": feats, "img_masks": None, "labels": None,
                   "boxes": None if self.grid is None else self.grid.expand(len(chunk), -1, -1).contiguous(),
                   "infos": [{"id": cid, "file_path": path} for path, cid in chunk]}
