"""ZSGNet's CSV grounding dataset: columns ``img_id,bbox,query``; bbox "[x1, y1, x2, y2]" pixels; query a phrase or a
list literal of phrases (one drawn per access). Row position is the sample id."""
from __future__ import annotations

import ast
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from errors import CorruptSampleError, DataError

from .iou_targets import iou_groundtruth
from .word_vectors import WordVectors

LOG = logging.getLogger(__name__)
FILTERS = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING,
}
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def parse_bbox(text: str) -> list[float] | None:
    """"[x1, y1, x2, y2]" -> four floats, or None when malformed."""
    try:
        box = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        return None
    return [float(v) for v in box]


def parse_query(text: str, list_literal: bool) -> str | list | None:
    """The phrase, or the list of phrases when the file stores list literals; None when the literal is malformed."""
    if not list_literal:
        return text
    try:
        phrases = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return phrases if isinstance(phrases, list) else None


def row_problem(img_id: str, box: list[float] | None, bbox_text: str, query: str | list | None) -> str | None:
    """What makes a CSV row unusable, or None."""
    if not img_id.strip():
        return "an empty img_id"
    if box is None:
        return f"a malformed bbox {bbox_text!r}; expected a list '[x1, y1, x2, y2]'"
    if query is None:
        return "a malformed query list"
    for phrase in query if isinstance(query, list) else [query]:
        if not isinstance(phrase, str) or not phrase.replace("_", " ").strip():
            return "an empty query"
        control = CONTROL_CHARACTER.search(phrase)
        if control:
            return f"a control character {control.group()!r} in its query {phrase!r}"
    return None


@dataclass
class Annotations:
    """The usable rows of a split's CSV (``bbox`` parsed; ``query`` a phrase or a list of phrases); the index is the
    row's position in the file, i.e. the sample id predictions carry. ``skipped_rows`` lists rows left out."""

    csv_file: Path
    data: pd.DataFrame
    skipped_rows: set[int] = field(default_factory=set)

    @classmethod
    def read(cls, csv_file: Path, skip_corrupt: bool = False) -> Annotations:
        """Read and check every row; a bad row stops with its file, row and fix unless ``skip_corrupt``."""
        if not csv_file.is_file():
            raise DataError(f"annotation file {csv_file} not found (run 'make gin-data'; train_flat.csv comes from "
                            f"flattening train.csv)")
        try:
            df = pd.read_csv(csv_file, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{csv_file} is not a readable CSV ({reason}); re-create it with 'make gin-data'") from None
        missing = {"img_id", "bbox", "query"} - set(df.columns)
        if missing:
            raise DataError(f"{csv_file} lacks column(s) {sorted(missing)}; expected img_id,bbox,query")
        if df.empty:
            raise DataError(f"{csv_file} has no rows")
        list_literal = df["query"].iloc[0].startswith("[")  # original: list literals detected from the first row
        boxes = [parse_bbox(t) for t in df["bbox"]]
        queries = [parse_query(t, list_literal) for t in df["query"]]
        problems = {row: problem for row, args in enumerate(zip(df["img_id"], boxes, df["bbox"], queries))
                    if (problem := row_problem(*args))}
        df["bbox"] = pd.Series(boxes, index=df.index, dtype=object)
        df["query"] = pd.Series(queries, index=df.index, dtype=object)
        where = {row: f"{csv_file}: row {row} (img_id {df['img_id'].iloc[row]!r}) has {problem}"
                 for row, problem in problems.items()}
        if problems and not skip_corrupt:
            first = min(where)
            more = f" ({len(where) - 1} more bad rows)" if len(where) > 1 else ""
            raise DataError(f"{where[first]}{more}; fix or delete the row, or pass --skip_corrupt to skip such rows")
        for row in sorted(where):
            LOG.warning("--skip_corrupt: skipping %s", where[row])
        kept = df.drop(index=list(problems))
        if kept.empty:
            raise DataError(f"{csv_file}: no usable rows (all {len(df)} are bad); re-create it with 'make gin-data'")
        return cls(csv_file, kept, set(problems))


def open_image(path: Path, where: str, skippable: bool = True) -> Image.Image:
    """The image as RGB; ``where`` (e.g. " (row 3 of val.csv)") is named in errors, and --skip_corrupt when
    ``skippable``."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {path}{where} not found; check img_dir in configs/ds_info.json or run "
                        f"'make gin-data'") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        skip = " or pass --skip_corrupt to skip such samples" if skippable else ""
        raise CorruptSampleError(f"image {path}{where} cannot be decoded ({exc}); replace the file (real data: "
                                 f"'make gin-data'){skip}") from None


class ImgQuDataset(Dataset):
    """One sample per usable CSV row; with ``skip_corrupt`` an undecodable image yields ``{"skipped": row}``, which
    the collater leaves out of the batch and reports."""

    def __init__(self, annotations: Annotations | str | Path, img_dir: str | Path, words: WordVectors, *, resize: int,
                 img_suffix: str = "", phrase_len: int = 50, use_att_loss: bool = True, resize_filter: str = "nearest",
                 skip_corrupt: bool = False) -> None:
        if not isinstance(annotations, Annotations):
            annotations = Annotations.read(Path(annotations), skip_corrupt)
        self.csv_file = annotations.csv_file
        self.data = annotations.data
        self.skipped_rows = annotations.skipped_rows
        self.img_dir = Path(img_dir)
        self.words = words
        self.resize = resize
        self.img_suffix = img_suffix
        self.phrase_len = phrase_len
        self.use_att_loss = use_att_loss
        self.resize_filter = FILTERS[resize_filter]
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.data)

    def image_path(self, idx: int) -> Path:
        return self.img_dir / f"{self.data['img_id'].iloc[idx]}{self.img_suffix}"

    def phrase(self, idx: int) -> str:
        query = self.data["query"].iloc[idx]
        if isinstance(query, list):
            query = str(np.random.choice(query))
        return query.replace("_", " ").strip()

    def encode_phrase(self, phrase: str) -> tuple[np.ndarray, int]:
        """phrase_len x dim word vectors of the phrase padded with " PD" tokens and re-tokenised (original scheme)."""
        qlen = len(self.words.tokens(phrase))
        assert qlen > 0, "empty queries are rejected when the CSV is read"
        padded = self.words.tokens(phrase + " PD" * (self.phrase_len - qlen))[: self.phrase_len]
        # Longer phrases are cut to phrase_len (the original kept qlen > 50 and then failed in the LSTM packing).
        return self.words.vectors(padded), min(qlen, self.phrase_len)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        row = int(self.data.index[idx])
        where = f" (row {row} of {self.csv_file})"
        try:
            img = open_image(self.image_path(idx), where)
        except CorruptSampleError:
            if not self.skip_corrupt:
                raise
            LOG.warning("--skip_corrupt: skipping image %s%s: it cannot be decoded", self.image_path(idx), where)
            return {"skipped": torch.tensor(row)}
        w, h = img.size
        qvec, qlen = self.encode_phrase(self.phrase(idx))
        x1, y1, x2, y2 = self.data["bbox"].iloc[idx]
        target = np.array([y1 / h, x1 / w, y2 / h, x2 / w])  # (y, x) order, [0, 1]
        if self.use_att_loss:
            iou_maps = iou_groundtruth(target, self.resize)
        else:
            iou_maps = [np.zeros(1)] * 3
        # No mean/std normalisation and no augmentation (original); the filter is explicit (Pillow's default changed).
        pixels = np.asarray(img.resize((self.resize, self.resize), self.resize_filter), dtype=np.float32) / 255
        item = {
            "img": torch.from_numpy(pixels.transpose(2, 0, 1).copy()),
            "idxs": torch.tensor(row),
            "qvec": torch.from_numpy(qvec),
            "qlens": torch.tensor(qlen),
            "annot": torch.from_numpy(2 * target - 1).float(),
            "orig_annot": torch.tensor([x1, y1, x2, y2]),
            "img_size": torch.tensor([h, w]),
        }
        for i, m in enumerate(iou_maps):
            item[f"iou_annot_stage_{i}"] = torch.from_numpy(m).float()
        return item


def collater(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack every field as float (original) and trim ``qvec`` to the batch's longest phrase. Samples skipped as
    corrupt (--skip_corrupt) are left out; their rows travel in ``skipped`` (absent when there are none)."""
    kept = [b for b in batch if "skipped" not in b]
    skipped = [int(b["skipped"]) for b in batch if "skipped" in b]
    out = {k: torch.stack([b[k] for b in kept]).float() for k in kept[0]} if kept else {}
    if kept:
        out["qvec"] = out["qvec"][:, : int(out["qlens"].max().item())]
    if skipped:
        out["skipped"] = torch.tensor(skipped)
    return out


class ChunkDistributedSampler(Sampler[int]):
    """The original's DistributedSampler: optional epoch-seeded shuffle, padding by repetition, contiguous chunks."""

    def __init__(self, length: int, num_replicas: int, rank: int, shuffle: bool) -> None:
        self.length, self.num_replicas, self.rank, self.shuffle = length, num_replicas, rank, shuffle
        self.num_samples = math.ceil(length / num_replicas)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            indices = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.epoch)).tolist()
        else:
            indices = list(range(self.length))
        indices += indices[: self.num_samples * self.num_replicas - len(indices)]
        return iter(indices[self.num_samples * self.rank: self.num_samples * (self.rank + 1)])

    def __len__(self) -> int:
        return self.num_samples


def get_dataloader(dataset: Dataset, *, is_train: bool, batch_size: int, num_workers: int, world_size: int = 1,
                   rank: int = 0, generator: torch.Generator | None = None) -> DataLoader:
    if world_size > 1:
        # Original: the distributed sampler shuffles validation/test too (predictions are keyed by id).
        sampler = ChunkDistributedSampler(len(dataset), world_size, rank, shuffle=True)
    elif is_train:
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
    else:
        sampler = torch.utils.data.SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=is_train, num_workers=num_workers,
                      collate_fn=collater)


SPLIT_KEYS = (("train", "trn_csv_file"), ("valid", "val_csv_file"), ("test", "test_csv_file"))


def read_splits(cfg: dict[str, Any], resolve) -> dict[str, Annotations]:
    """train / valid / test annotations of ``cfg['ds_to_use']`` (paths from ds_info, resolved by ``resolve``), every
    row checked."""
    info = cfg["ds_info"][cfg["ds_to_use"]]
    return {split: Annotations.read(resolve(info[key]), cfg["skip_corrupt"]) for split, key in SPLIT_KEYS}


def get_datasets(cfg: dict[str, Any], splits: dict[str, Annotations], words: WordVectors, resolve
                 ) -> dict[str, ImgQuDataset]:
    """The datasets of ``read_splits``'s annotations, images from ds_info's img_dir."""
    info = cfg["ds_info"][cfg["ds_to_use"]]
    common = dict(resize=cfg["resize_img"][0], img_suffix=info.get("img_suffix", ""), phrase_len=cfg["phrase_len"],
                  use_att_loss=cfg["use_att_loss"], resize_filter=cfg["resize_filter"], skip_corrupt=cfg["skip_corrupt"])
    img_dir = resolve(info["img_dir"])
    return {split: ImgQuDataset(annotations, img_dir, words, **common) for split, annotations in splits.items()}
