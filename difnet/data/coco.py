"""COCO captions in the Karpathy split (M²'s annotation folder) and the datasets DIFNet trains on.

The annotation folder holds ``captions_{train,val}2014.json`` and the id files ``coco_{train,restval,dev,test}_ids.npy``.
The id files list **annotation (caption) ids**: train ids index the train json; restval, dev and test ids index
the val json. With ``use_restval`` (the default) train = train + restval. One example per caption.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from errors import DATA_FIX, DifnetError, one_line

from .features import GridFeatures, SegmentationFeatures
from .text import numericalize
from .vocab import Vocab


logger = logging.getLogger("difnet")


@dataclass(frozen=True)
class Example:
    image_id: int
    folder: str  # train2014 or val2014: picks the segmentation folder
    file_name: str
    caption: str


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DifnetError(f"annotation file {path} not found (--annotation_folder): {DATA_FIX}") from None


def _read_ids(path: str) -> np.ndarray:
    try:
        return np.load(path)
    except FileNotFoundError:
        raise DifnetError(f"split file {path} not found (--annotation_folder): {DATA_FIX}") from None


def _examples(coco: dict, ann_ids: np.ndarray, folder: str, json_path: str) -> list[Example]:
    anns = {a["id"]: a for a in coco["annotations"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    out = []
    empty = []
    for ann_id in ann_ids.tolist():
        if ann_id not in anns:
            raise DifnetError(f"annotation id {ann_id} of the split files is not in {json_path}: {DATA_FIX}")
        ann = anns[ann_id]
        if not isinstance(ann.get("caption"), str):
            raise DifnetError(f"annotation {ann_id} in {json_path} has no caption text ({ann.get('caption')!r}): "
                              f"fix or remove it; {DATA_FIX}")
        if not ann["caption"].strip():
            empty.append(ann_id)
        file_name = files[ann["image_id"]]
        # the original takes the image id from the file name (number after the last '_')
        image_id = int(file_name.split("_")[-1].split(".")[0])
        out.append(Example(image_id, folder, file_name, ann["caption"]))
    if empty:
        # the original trains on them (as '<bos> <eos>'), so they are kept, loudly
        logger.warning("%d empty captions in %s (annotation ids %s%s); kept, as the original does", len(empty),
                       json_path, ", ".join(map(str, empty[:5])), ", ..." if len(empty) > 5 else "")
    return out


def load_splits(annotation_folder: str, use_restval: bool = True) -> dict[str, list[Example]]:
    """{'train', 'val', 'test'} -> examples, in the id files' order."""
    train_json = os.path.join(annotation_folder, "captions_train2014.json")
    val_json = os.path.join(annotation_folder, "captions_val2014.json")
    train_coco, val_coco = _read_json(train_json), _read_json(val_json)

    def ids(name: str) -> np.ndarray:
        return _read_ids(os.path.join(annotation_folder, f"coco_{name}_ids.npy"))

    train = _examples(train_coco, ids("train"), "train2014", train_json)
    if use_restval:
        train += _examples(val_coco, ids("restval"), "val2014", val_json)
    return {
        "train": train,
        "val": _examples(val_coco, ids("dev"), "val2014", val_json),
        "test": _examples(val_coco, ids("test"), "val2014", val_json),
    }


def check_visual_inputs(examples: Sequence[Example], grid: GridFeatures, seg: SegmentationFeatures | None) -> None:
    """Fail before training when a feature key or segmentation file is missing (one line naming it)."""
    keys = grid.keys()
    for ex in examples:
        if f"{ex.image_id}_features" not in keys:
            raise DifnetError(f"{grid.path} has no key '{ex.image_id}_features' (image {ex.file_name}): "
                              f"the features file does not match the annotations; {DATA_FIX}")
    if seg is None:
        return
    listed: dict[str, set[str]] = {}
    for ex in examples:
        if ex.folder not in listed:
            folder = os.path.join(seg.pixel_path, ex.folder)
            listed[ex.folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        if f"{ex.image_id}.npy" not in listed[ex.folder]:
            raise DifnetError(f"segmentation file {seg.path(ex.image_id, ex.folder)} not found (--pixel_path): "
                              f"{DATA_FIX}")


class CorruptSamples:
    """--skip_corrupt: a sample whose files cannot be read is skipped and logged; the count is shared with the
    DataLoader workers (they inherit the counter)."""

    def __init__(self) -> None:
        self._count = multiprocessing.Value("i", 0)

    def skip(self, error: DifnetError) -> None:
        logger.warning("--skip_corrupt: skipping a sample: %s", one_line(error))
        with self._count.get_lock():
            self._count.value += 1

    @property
    def count(self) -> int:
        return self._count.value


def read_visual(grid: GridFeatures, seg: SegmentationFeatures | None, image_id: int, folder: str,
                corrupt: CorruptSamples | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(grid, segmentation) of one image; None for a corrupt one when skipping (else the error stops the run)."""
    try:
        return grid[image_id], seg(image_id, folder) if seg is not None else None
    except DifnetError as e:
        if corrupt is None:
            raise
        corrupt.skip(e)
        return None


class CaptionDataset(Dataset):
    """One item per caption (cross-entropy training and the validation loss): (grid, tokens, segmentation), or
    None for a skipped corrupt sample."""

    def __init__(self, examples: Sequence[Example], grid: GridFeatures, seg: SegmentationFeatures | None,
                 tokenizer: Callable[[str], list[str]], corrupt: CorruptSamples | None = None) -> None:
        self.examples, self.grid, self.seg, self.tokenizer = list(examples), grid, seg, tokenizer
        self.corrupt = corrupt

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int):
        ex = self.examples[i]
        visual = read_visual(self.grid, self.seg, ex.image_id, ex.folder, self.corrupt)
        if visual is None:
            return None
        return visual[0], self.tokenizer(ex.caption), visual[1]


def collate_captions(vocab: Vocab) -> Callable:
    """-> (grid (b, 49, 2048), tokens (b, L), segmentation (b, 133, 7, 7) or None), or None if every sample of
    the batch was skipped."""

    def collate(batch):
        batch = [item for item in batch if item is not None]
        if not batch:
            return None
        grids, words, segs = zip(*batch)
        seg = None if segs[0] is None else torch.from_numpy(np.stack(segs))
        return torch.from_numpy(np.stack(grids)), numericalize(words, vocab), seg

    return collate


class ImageDataset(Dataset):
    """One item per image with all its reference captions (SCST, beam-search evaluation), images in order of
    first appearance in the split."""

    def __init__(self, examples: Sequence[Example], grid: GridFeatures, seg: SegmentationFeatures | None,
                 corrupt: CorruptSamples | None = None) -> None:
        refs: dict[tuple[int, str], list[str]] = {}
        for ex in examples:
            refs.setdefault((ex.image_id, ex.folder), []).append(ex.caption)
        self.keys = list(refs)
        self.refs = [refs[k] for k in self.keys]
        self.grid, self.seg, self.corrupt = grid, seg, corrupt

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int):
        image_id, folder = self.keys[i]
        visual = read_visual(self.grid, self.seg, image_id, folder, self.corrupt)
        if visual is None:
            return None
        return image_id, visual[0], visual[1], self.refs[i]


@dataclass
class ImageBatch:
    image_ids: torch.Tensor  # (b,)
    grid: torch.Tensor  # (b, 49, 2048)
    seg: torch.Tensor | None  # (b, 133, 7, 7)
    refs: list[list[str]]  # raw reference captions per image


def collate_images(batch) -> ImageBatch | None:
    batch = [item for item in batch if item is not None]
    if not batch:
        return None  # every sample of the batch was skipped (--skip_corrupt)
    ids, grids, segs, refs = zip(*batch)
    seg = None if segs[0] is None else torch.from_numpy(np.stack(segs))
    return ImageBatch(torch.tensor(ids), torch.from_numpy(np.stack(grids)), seg, list(refs))
