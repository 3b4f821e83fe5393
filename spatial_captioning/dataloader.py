"""Reads the prepro outputs (cocotalk.json, cocotalk_label.h5, cocobu_att, cocobu_box_vec) into batches.

A batch is a dict: ``img_feats`` (N, P, F) float, ``img_masks`` (N, P) or None when every image has the same box
count, ``boxes`` (N, P, G) grid vectors (with --use_grid) or None, ``labels`` (N, T+2) long = [0, words, 0, ...],
``label_masks`` (N, T+2) float over BOS + words + EOS, ``gts`` (one (n_i, T) uint32 array of all reference
captions per image) and ``infos`` ({ix, id, file_path} per image); N = images x seq_per_img, image-major.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass

import h5py
import numpy as np
import torch
import torch.utils.data as tud

LABEL_FIELDS = ("labels", "label_start_ix", "label_end_ix")
DATA_HINT = "run 'make spatial_captioning-data' and the prepro scripts (see README), or 'make spatial_captioning-toy'"


class DataError(Exception):
    """A user-fixable problem with the input files; entry scripts print it as one line."""


def load_json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path} ({DATA_HINT})")
    with open(path) as f:
        return json.load(f)


def load_label_h5(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise DataError(f"--input_label_h5 not found: {path} ({DATA_HINT})")
    with h5py.File(path, "r") as f:
        missing = [k for k in LABEL_FIELDS if k not in f]
        if missing:
            raise DataError(f"{path} lacks the field(s) {', '.join(missing)}: rebuild it with scripts/prepro_labels.py")
        return {k: f[k][:] for k in LABEL_FIELDS}


def split_indices(images: list[dict], train_only: bool) -> dict[str, list[int]]:
    """restval joins train unless --train_only 1 (113,287 training images on Karpathy COCO)."""
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for ix, img in enumerate(images):
        split = img["split"]
        if split in out:
            out[split].append(ix)
        elif split == "restval" and not train_only:
            out["train"].append(ix)
    return out


@dataclass
class ImageItem:
    att: np.ndarray
    grid: np.ndarray | None
    captions: np.ndarray
    gts: np.ndarray
    info: dict


class CaptionDataset(tud.Dataset):
    """One image per item: its region features, grid vectors and seq_per_img sampled captions."""

    def __init__(self, opt: argparse.Namespace, info: dict, labels: dict[str, np.ndarray], seq_per_img: int):
        self.images = info["images"]
        self.labels = labels["labels"]
        self.start = labels["label_start_ix"]
        self.end = labels["label_end_ix"]
        self.seq_per_img = seq_per_img
        self.att_dir = opt.input_img_feat_dir
        self.grid_dir = opt.input_grid_vec_dir if opt.use_grid else None
        self.box_coord = opt.use_grid and getattr(opt, "enc_pos_type", "gxg") == "box-coord"
        self.box_dir = getattr(opt, "input_box_dir", None)
        self.norm_att = bool(getattr(opt, "norm_img_feat", 0))
        self.num_grids = opt.num_grids
        self.seed = getattr(opt, "seed", 0)
        self.epoch = 0
        if len(self.start) != len(self.images):
            raise DataError(f"{opt.input_label_h5} has {len(self.start)} images but {opt.input_json} has "
                            f"{len(self.images)}: both must come from the same prepro_labels.py run")

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, directory: str, cid: int, ext: str, flag: str) -> np.ndarray:
        path = os.path.join(directory, f"{cid}{ext}")
        if not os.path.isfile(path):
            raise DataError(f"missing {path} ({flag}; {DATA_HINT})")
        if ext == ".npz":
            with np.load(path) as z:
                if "feat" not in z:
                    raise DataError(f"{path} has no 'feat' array (expected make_bu_data.py output)")
                return z["feat"]
        return np.load(path)

    def captions(self, ix: int, rng: np.random.Generator) -> np.ndarray:
        """seq_per_img consecutive captions from a random start, or with replacement when there are fewer."""
        lo, hi = int(self.start[ix]) - 1, int(self.end[ix]) - 1  # 1-based inclusive in the file
        if hi < lo:
            raise DataError(f"image #{ix} has no captions in the label file")
        if hi - lo + 1 < self.seq_per_img:
            return self.labels[rng.integers(lo, hi + 1, self.seq_per_img)]
        first = int(rng.integers(lo, hi - self.seq_per_img + 2))
        return self.labels[first:first + self.seq_per_img]

    def __getitem__(self, ix: int) -> ImageItem:
        img = self.images[ix]
        cid = img["id"]
        att = self._load(self.att_dir, cid, ".npz", "--input_img_feat_dir").astype(np.float32)
        att = att.reshape(-1, att.shape[-1])
        if self.norm_att:
            att = att / np.linalg.norm(att, 2, 1, keepdims=True)
        grid = None
        if self.box_coord:
            grid = self._load(self.box_dir, cid, ".npy", "--input_box_dir").astype(np.float32)
        elif self.grid_dir is not None:
            grid = self._load(self.grid_dir, cid, ".npy", "--input_grid_vec_dir").astype(np.float32)
            if grid.ndim != 2 or grid.shape[1] != self.num_grids:
                raise DataError(f"{self.grid_dir}/{cid}.npy has shape {grid.shape}, expected (K, {self.num_grids}) "
                                f"for --num_grids {self.num_grids} (rerun prepro_areas.py --num_grids {self.num_grids})")
        if grid is not None and grid.shape[0] != att.shape[0]:
            raise DataError(f"image {cid}: {att.shape[0]} boxes in {self.att_dir} but {grid.shape[0]} rows in its "
                            "grid vector file: rebuild it with prepro_areas.py from the same boxes")
        rng = np.random.default_rng([self.seed, self.epoch, ix])
        lo, hi = int(self.start[ix]) - 1, int(self.end[ix])
        return ImageItem(att, grid, self.captions(ix, rng).astype(np.int64), self.labels[lo:hi],
                         {"ix": ix, "id": cid, "file_path": img.get("file_path", "")})


def collate(items: list[ImageItem], seq_per_img: int, seq_length: int) -> dict:
    """Pad boxes to the longest image, repeat each image seq_per_img times, frame captions with BOS/EOS zeros."""
    n = len(items) * seq_per_img
    max_k = max(it.att.shape[0] for it in items)
    feats = np.zeros((n, max_k, items[0].att.shape[1]), dtype=np.float32)
    masks = np.zeros((n, max_k), dtype=np.float32)
    grids = None if items[0].grid is None else np.zeros((n, max_k, items[0].grid.shape[1]), dtype=np.float32)
    labels = np.zeros((n, seq_length + 2), dtype=np.int64)
    for i, it in enumerate(items):
        rows = slice(i * seq_per_img, (i + 1) * seq_per_img)
        k = it.att.shape[0]
        feats[rows, :k] = it.att
        masks[rows, :k] = 1
        if grids is not None:
            grids[rows, :k] = it.grid
        labels[rows, 1:seq_length + 1] = it.captions[:, :seq_length]
    nonzero = (labels != 0).sum(1) + 2  # words + BOS + EOS
    label_masks = (np.arange(seq_length + 2)[None, :] < nonzero[:, None]).astype(np.float32)
    return {
        "img_feats": torch.from_numpy(feats),
        # None when every image has the same number of boxes (as the original loader)
        "img_masks": None if masks.all() else torch.from_numpy(masks),
        "boxes": None if grids is None else torch.from_numpy(grids),
        "labels": torch.from_numpy(labels),
        "label_masks": torch.from_numpy(label_masks),
        "gts": [it.gts for it in items],
        "infos": [it.info for it in items],
    }


class DataLoader:
    """Iterates one split; one ``for data in loader`` pass is one epoch (train: reshuffled every epoch).

    ``state_dict()`` records the epoch and the position inside it, so a resumed run sees the same batches.
    """

    def __init__(self, opt: argparse.Namespace, split: str, state: dict | None = None, length: int = -1,
                 rank: int = 0, world_size: int = 1):
        self.opt = opt
        self.split = split
        self.batch_size = opt.batch_size
        self.seq_per_img = opt.seq_per_img
        self.info = load_json(opt.input_json, "--input_json")
        if "ix_to_word" not in self.info or "images" not in self.info:
            raise DataError(f"{opt.input_json} lacks 'ix_to_word'/'images': pass the cocotalk.json written by "
                            "scripts/prepro_labels.py, not the Karpathy dataset_coco.json")
        self.ix_to_word = self.info["ix_to_word"]
        labels = load_label_h5(opt.input_label_h5)
        self._seq_length = labels["labels"].shape[1]
        self.dataset = CaptionDataset(opt, self.info, labels, self.seq_per_img)
        self.indices = split_indices(self.info["images"], bool(opt.train_only))[split]
        if length is not None and length >= 0:
            self.indices = self.indices[:length]
        if not self.indices:
            raise DataError(f"split '{split}' of {opt.input_json} is empty")
        self.shuffle = split == "train"
        self.rank, self.world_size = rank, world_size
        state = state or {}
        self.epoch = state.get("epoch", 0)
        self.position = state.get("position", 0)

    def vocab_size(self) -> int:
        return len(self.ix_to_word)

    def seq_length(self) -> int:
        return self._seq_length

    def get_vocab(self) -> dict[str, str]:
        return self.ix_to_word

    def set_vocab(self, vocab: dict[str, str]) -> None:
        self.ix_to_word = vocab

    def get_seq_per_img(self) -> int:
        return self.seq_per_img

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def epoch_order(self) -> list[int]:
        if not self.shuffle:
            return list(self.indices)
        perm = np.random.default_rng([self.opt.seed, self.epoch]).permutation(len(self.indices))
        return [self.indices[i] for i in perm]

    def __len__(self) -> int:
        return -(-len(self.indices) // (self.batch_size * self.world_size))

    def __iter__(self):
        order = self.epoch_order()
        step = self.batch_size * self.world_size
        batches = [order[s:s + step][self.rank::self.world_size] for s in range(self.position, len(order), step)]
        self.dataset.epoch = self.epoch
        workers = getattr(self.opt, "num_workers", 0)
        # An own generator: creating the iterator must not draw from the global torch RNG (dropout, sampling),
        # or a run resumed mid-epoch would diverge from an uninterrupted one.
        gen = torch.Generator().manual_seed(self.opt.seed * 1000003 + self.epoch)
        loader = tud.DataLoader(self.dataset, batch_sampler=batches, num_workers=workers, generator=gen,
                                collate_fn=lambda items: collate(items, self.seq_per_img, self._seq_length))
        for batch in loader:
            self.position += step
            if self.position >= len(order):
                self.position = 0
                self.epoch += 1
            yield batch
