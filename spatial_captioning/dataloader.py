"""Reads the prepro outputs (cocotalk.json, cocotalk_label.h5, cocobu_att, cocobu_box_vec) into batches.

A batch is a dict: ``img_feats`` (N, P, F) float, ``img_masks`` (N, P) or None when every image has the same box
count, ``boxes`` (N, P, G) grid vectors (with --use_grid) or None, ``labels`` (N, T+2) long = [0, words, 0, ...],
``label_masks`` (N, T+2) float over BOS + words + EOS, ``gts`` (one (n_i, T) uint32 array of all reference
captions per image) and ``infos`` ({ix, id, file_path} per image); N = images x seq_per_img, image-major.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import zipfile
from dataclasses import dataclass

import h5py
import numpy as np
import torch
import torch.utils.data as tud

LABEL_FIELDS = ("labels", "label_start_ix", "label_end_ix")
DATA_HINT = "run 'make spatial_captioning-data' and the prepro scripts (see README), or 'make spatial_captioning-toy'"
SKIP_HINT = "or pass --skip_corrupt to skip such images"
log = logging.getLogger(__name__)


class DataError(Exception):
    """A user-fixable problem with the input files; entry scripts print it as one line."""


class CorruptSampleError(DataError):
    """One image's feature file cannot be used; --skip_corrupt skips the image instead of stopping."""


@dataclass
class BadSample:
    """What a worker returns in place of an image it could not load: the error travels as data, so the main process
    can raise it as one line (an exception raised inside a worker reaches it wrapped in the worker's traceback)."""
    message: str
    skippable: bool


def load_json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path} ({DATA_HINT})")
    with open(path) as f:
        return json.load(f)


def load_label_h5(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise DataError(f"--input_label_h5 not found: {path} ({DATA_HINT})")
    rebuild = "rebuild it with scripts/prepro_labels.py (or 'make spatial_captioning-toy')"
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in LABEL_FIELDS if k not in f]
            if missing:
                raise DataError(f"{path} lacks the field(s) {', '.join(missing)}: {rebuild}")
            labels = {k: f[k][:] for k in LABEL_FIELDS}
    except OSError as err:
        raise DataError(f"{path} cannot be read as HDF5 ({str(err).split(' (')[0]}): {rebuild}") from None
    shapes = {k: v.shape for k, v in labels.items()}
    if (labels["labels"].ndim != 2 or labels["label_start_ix"].ndim != 1
            or labels["label_start_ix"].shape != labels["label_end_ix"].shape):
        raise DataError(f"{path} has shapes {shapes}; expected labels (M, T) and label_start_ix/label_end_ix (N,): "
                        f"{rebuild}")
    if any(not np.issubdtype(v.dtype, np.integer) for v in labels.values()):
        dtypes = {k: str(v.dtype) for k, v in labels.items()}
        raise DataError(f"{path} holds non-integer arrays ({dtypes}): {rebuild}")
    ends = labels["label_end_ix"]
    if len(ends) and (int(ends.max()) > len(labels["labels"]) or int(labels["label_start_ix"].min()) < 1):
        raise DataError(f"{path}: label_start_ix/label_end_ix point outside the {len(labels['labels'])} rows of "
                        f"labels: {rebuild}")
    return labels


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
        self.feat_size = opt.img_feat_size
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
        try:
            if ext == ".npz":
                with np.load(path) as z:
                    if "feat" not in z:
                        raise CorruptSampleError(f"{path} has no 'feat' array: rebuild it with "
                                                 f"scripts/make_bu_data.py, {SKIP_HINT}")
                    return z["feat"]
            return np.load(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise CorruptSampleError(f"{path} is corrupt ({type(err).__name__}: {err}): rebuild it ({flag}), "
                                     f"{SKIP_HINT}") from None

    def captions(self, ix: int, rng: np.random.Generator) -> np.ndarray:
        """seq_per_img consecutive captions from a random start, or with replacement when there are fewer."""
        lo, hi = int(self.start[ix]) - 1, int(self.end[ix]) - 1  # 1-based inclusive in the file
        if hi < lo:
            raise DataError(f"image #{ix} has no captions in the label file")
        if hi - lo + 1 < self.seq_per_img:
            return self.labels[rng.integers(lo, hi + 1, self.seq_per_img)]
        first = int(rng.integers(lo, hi - self.seq_per_img + 2))
        return self.labels[first:first + self.seq_per_img]

    def __getitem__(self, ix: int) -> ImageItem | BadSample:
        try:
            return self.load_item(ix)
        except CorruptSampleError as err:
            return BadSample(str(err), skippable=True)
        except DataError as err:
            return BadSample(str(err), skippable=False)

    def load_item(self, ix: int) -> ImageItem:
        img = self.images[ix]
        cid = img["id"]
        att = self._load(self.att_dir, cid, ".npz", "--input_img_feat_dir").astype(np.float32)
        if att.ndim < 2 or att.shape[-1] != self.feat_size:
            raise CorruptSampleError(f"{self.att_dir}/{cid}.npz has features of shape {att.shape}, expected "
                                     f"(K, {self.feat_size}) for --img_feat_size {self.feat_size}: rebuild it with "
                                     f"scripts/make_bu_data.py, {SKIP_HINT}")
        att = att.reshape(-1, att.shape[-1])
        if self.norm_att:
            att = att / np.linalg.norm(att, 2, 1, keepdims=True)
        grid = None
        if self.box_coord:
            grid = self._load(self.box_dir, cid, ".npy", "--input_box_dir").astype(np.float32)
        elif self.grid_dir is not None:
            grid = self._load(self.grid_dir, cid, ".npy", "--input_grid_vec_dir").astype(np.float32)
            if grid.ndim != 2 or grid.shape[1] != self.num_grids:
                raise CorruptSampleError(f"{self.grid_dir}/{cid}.npy has shape {grid.shape}, expected "
                                         f"(K, {self.num_grids}) for --num_grids {self.num_grids}: rerun "
                                         f"prepro_areas.py --num_grids {self.num_grids}, {SKIP_HINT}")
        if grid is not None and grid.shape[0] != att.shape[0]:
            raise CorruptSampleError(f"image {cid}: {att.shape[0]} boxes in {self.att_dir} but {grid.shape[0]} rows in "
                                     "its grid vector file: rebuild it with prepro_areas.py from the same boxes, "
                                     f"{SKIP_HINT}")
        rng = np.random.default_rng([self.seed, self.epoch, ix])
        lo, hi = int(self.start[ix]) - 1, int(self.end[ix])
        return ImageItem(att, grid, self.captions(ix, rng).astype(np.int64), self.labels[lo:hi],
                         {"ix": ix, "id": cid, "file_path": img.get("file_path", "")})


def collate_loaded(items: list[ImageItem | BadSample], seq_per_img: int, seq_length: int) -> dict:
    """collate() of the images that loaded; the others are passed on as ``bad`` (BadSample list)."""
    good = [it for it in items if not isinstance(it, BadSample)]
    batch = collate(good, seq_per_img, seq_length) if good else {}
    batch["bad"] = [it for it in items if isinstance(it, BadSample)]
    return batch


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
        self.skip_corrupt = bool(getattr(opt, "skip_corrupt", 0))
        self.skipped = 0
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
                                collate_fn=lambda items: collate_loaded(items, self.seq_per_img, self._seq_length))
        for batch in loader:
            self.position += step
            if self.position >= len(order):
                self.position = 0
                self.epoch += 1
            self.drop_bad(batch.pop("bad"))
            if "img_feats" in batch:  # else every image of the batch was skipped
                yield batch

    def drop_bad(self, bad: list[BadSample]) -> None:
        """Raise the first unusable image's error, or with --skip_corrupt log and count the corrupt ones."""
        for sample in bad:
            if not (sample.skippable and self.skip_corrupt):
                raise CorruptSampleError(sample.message) if sample.skippable else DataError(sample.message)
            self.skipped += 1
            log.warning("--skip_corrupt: skipping %s", sample.message.removesuffix(f", {SKIP_HINT}"))
