"""ZSGNet's CSV grounding dataset: columns ``img_id,bbox,query``; bbox "[x1, y1, x2, y2]" pixels; query a phrase or a
list literal of phrases (one drawn per access). Row position is the sample id."""
from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from errors import DataError

from .iou_targets import iou_groundtruth
from .word_vectors import WordVectors

FILTERS = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING,
}


def parse_bbox(text: str, csv_file: Path, row: int) -> list[float]:
    try:
        box = ast.literal_eval(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError):
        box = None
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise DataError(f"{csv_file}: row {row} has a malformed bbox {text!r}; expected a list '[x1, y1, x2, y2]' "
                        f"(re-create the CSVs with 'make gin-data')")
    return [float(v) for v in box]


def read_annotations(csv_file: Path) -> pd.DataFrame:
    """The CSV with ``bbox`` parsed to lists and ``query`` to lists when stored as list literals."""
    if not csv_file.is_file():
        raise DataError(f"annotation file {csv_file} not found (run 'make gin-data'; train_flat.csv comes from "
                        f"flattening train.csv)")
    df = pd.read_csv(csv_file)
    missing = {"img_id", "bbox", "query"} - set(df.columns)
    if missing:
        raise DataError(f"{csv_file} lacks column(s) {sorted(missing)}; expected img_id,bbox,query")
    if df.empty:
        raise DataError(f"{csv_file} has no rows")
    df["bbox"] = [parse_bbox(t, csv_file, i) for i, t in enumerate(df["bbox"])]
    df["query"] = df["query"].astype(str)
    if df["query"].iloc[0].startswith("["):  # original: list literals detected from the first row
        df["query"] = df["query"].apply(ast.literal_eval)
    return df


class ImgQuDataset(Dataset):
    def __init__(self, csv_file: str | Path, img_dir: str | Path, words: WordVectors, *, resize: int,
                 img_suffix: str = "", phrase_len: int = 50, use_att_loss: bool = True, resize_filter: str = "nearest") -> None:
        self.csv_file = Path(csv_file)
        self.img_dir = Path(img_dir)
        self.data = read_annotations(self.csv_file)
        self.words = words
        self.resize = resize
        self.img_suffix = img_suffix
        self.phrase_len = phrase_len
        self.use_att_loss = use_att_loss
        self.resize_filter = FILTERS[resize_filter]

    def __len__(self) -> int:
        return len(self.data)

    def image_path(self, idx: int) -> Path:
        return self.img_dir / f"{self.data['img_id'].iloc[idx]}{self.img_suffix}"

    def phrase(self, idx: int) -> str:
        query = self.data["query"].iloc[idx]
        if isinstance(query, list):
            query = str(np.random.choice(query))
        return query.replace("_", " ").strip()

    def encode_phrase(self, phrase: str, idx: int) -> tuple[np.ndarray, int]:
        """phrase_len x dim word vectors of the phrase padded with " PD" tokens and re-tokenised (original scheme)."""
        qlen = len(self.words.tokens(phrase))
        if qlen == 0:
            raise DataError(f"{self.csv_file}: row {idx} has an empty query")
        padded = self.words.tokens(phrase + " PD" * (self.phrase_len - qlen))[: self.phrase_len]
        # Longer phrases are cut to phrase_len (the original kept qlen > 50 and then failed in the LSTM packing).
        return self.words.vectors(padded), min(qlen, self.phrase_len)

    def load_image(self, idx: int) -> Image.Image:
        path = self.image_path(idx)
        try:
            return Image.open(path).convert("RGB")
        except FileNotFoundError:
            raise DataError(f"image {path} (row {idx} of {self.csv_file}) not found; check img_dir in "
                            f"configs/ds_info.json or run 'make gin-data'") from None

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        img = self.load_image(idx)
        w, h = img.size
        qvec, qlen = self.encode_phrase(self.phrase(idx), idx)
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
            "idxs": torch.tensor(idx),
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
    """Stack every field as float (original) and trim ``qvec`` to the batch's longest phrase."""
    out = {k: torch.stack([b[k] for b in batch]).float() for k in batch[0]}
    out["qvec"] = out["qvec"][:, : int(out["qlens"].max().item())]
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


def get_datasets(cfg: dict[str, Any], words: WordVectors, resolve) -> dict[str, ImgQuDataset]:
    """train / valid / test datasets of ``cfg['ds_to_use']`` (paths from ds_info, resolved by ``resolve``)."""
    info = cfg["ds_info"][cfg["ds_to_use"]]
    common = dict(resize=cfg["resize_img"][0], img_suffix=info.get("img_suffix", ""), phrase_len=cfg["phrase_len"],
                  use_att_loss=cfg["use_att_loss"], resize_filter=cfg["resize_filter"])
    img_dir = resolve(info["img_dir"])
    return {
        split: ImgQuDataset(resolve(info[key]), img_dir, words, **common)
        for split, key in (("train", "trn_csv_file"), ("valid", "val_csv_file"), ("test", "test_csv_file"))
    }
