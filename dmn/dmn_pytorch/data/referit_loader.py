"""ReferIt, UNC, UNC+ and GRef referring-segmentation dataset (original ``dmn_pytorch/referit_loader.py``).

On first use for a dataset, ``<split_root>/<dataset>/`` is built: one ``<dataset>_<split>.pth`` per split (a list of
``(image file, mask file, sentence)``), ``corpus.pth`` (the vocabulary) and one mask tensor per object. Later runs
only read those files, all through torch's weights-only loader.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import scipy.io as sio
import torch
from torch.utils.data import Dataset, default_collate

from ..utils.word_utils import Corpus, EmptyQueryError, load_corpus
from .refer_files import DataFileError, decode_segmentation, load_refer

logger = logging.getLogger(__name__)
cv2.setNumThreads(0)

SUPPORTED_DATASETS: dict[str, dict] = {
    "referit": {"splits": ("train", "val", "trainval", "test")},
    "unc": {"splits": ("train", "val", "trainval", "testA", "testB"), "params": ("refcoco", "unc")},
    "unc+": {"splits": ("train", "val", "trainval", "testA", "testB"), "params": ("refcoco+", "unc")},
    "gref": {"splits": ("train", "val"), "params": ("refcocog", "google")},
}
# Original: three ReferIt images are skipped (broken files in the release).
REFERIT_SKIPPED_IMAGES = ("19579.jpg", "17975.jpg", "19575.jpg")
# Written into each split folder: the resolved --data the split files were built from.
DATA_ROOT_FILE = "data_root.txt"
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
# A JPEG's end-of-image marker may be followed by a few padding bytes; it is looked for in this many last bytes.
JPEG_TAIL = 64


class CorruptSampleError(DataFileError):
    """One sample cannot be used (unreadable or truncated image, unreadable mask, empty query); ``--skip_corrupt``
    skips such samples instead of stopping."""


def read_rgb_image(path: Path) -> np.ndarray:
    """The image as RGB uint8, decoded by OpenCV as the original; a truncated JPEG (which libjpeg decodes with a
    grey bottom and an anonymous warning) or undecodable bytes raise ``CorruptSampleError`` naming the file."""
    if not path.exists():
        raise DataFileError(f"missing image {path}: run 'make dmn-data'")
    data = path.read_bytes()
    fix = "replace it (run 'make dmn-data') or pass --skip_corrupt to skip such samples"
    if data.startswith(JPEG_START) and JPEG_END not in data[-JPEG_TAIL:]:
        raise CorruptSampleError(f"image {path} is a truncated JPEG (no end-of-image marker): {fix}")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise CorruptSampleError(f"image {path} cannot be decoded (not an image or corrupt bytes): {fix}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def atomic_save(obj: object, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class ReferDataset(Dataset):
    def __init__(self, data_root: str | Path, split_root: str | Path = "data", dataset: str = "referit",
                 transform: Callable | None = None, annotation_transform: Callable | None = None,
                 split: str = "train", max_query_len: int = 20, skip_corrupt: bool = False):
        if dataset not in SUPPORTED_DATASETS:
            raise ValueError(f"--dataset {dataset!r} is not supported; choose one of {', '.join(SUPPORTED_DATASETS)}")
        valid_splits = SUPPORTED_DATASETS[dataset]["splits"]
        if split not in valid_splits:
            raise ValueError(f"dataset {dataset} has no split {split!r}; choose one of {', '.join(valid_splits)}")
        self.data_root = Path(data_root)
        self.split_root = Path(split_root)
        self.dataset = dataset
        self.split = split
        self.query_len = max_query_len
        self.transform = transform
        self.annotation_transform = annotation_transform
        self.skip_corrupt = skip_corrupt
        if dataset == "referit":
            self.dataset_root = self.data_root / "referit"
            self.im_dir = self.dataset_root / "images"
            self.mask_dir = self.dataset_root / "mask"
        else:
            self.dataset_root = self.data_root / "other"
            self.im_dir = self.dataset_root / "images" / "mscoco" / "images" / "train2014"
            self.mask_dir = self.dataset_root / dataset / "mask"
        self.split_dir = self.data_root / "referit" / "splits"

        dataset_path = self.split_root / dataset
        if not dataset_path.exists() or self._built_from_other_data(dataset_path):
            self.process_dataset()
        corpus_path = dataset_path / "corpus.pth"
        if not corpus_path.exists():
            raise DataFileError(f"missing {corpus_path}: delete {dataset_path} to rebuild the split files")
        self.corpus: Corpus = load_corpus(corpus_path)
        splits = ["train", "val"] if dataset != "referit" and split == "trainval" else [split]
        self.images: list[tuple[str, str, str]] = []
        for name in splits:
            path = dataset_path / f"{dataset}_{name}.pth"
            if not path.exists():
                raise DataFileError(f"missing {path}: delete {dataset_path} to rebuild the split files")
            self.images += [tuple(item) for item in torch.load(path, weights_only=True)]

    # ---- preprocessing -------------------------------------------------------------------------------------------
    def _built_from_other_data(self, folder: Path) -> bool:
        """The split files list images of one --data folder, recorded in DATA_ROOT_FILE; a folder without it (the
        original's, or the released splits) is taken as it is."""
        marker = folder / DATA_ROOT_FILE
        if not marker.exists():
            return False
        built_from = marker.read_text().strip()
        if built_from == str(self.data_root.resolve()):
            return False
        logger.warning("split files in %s were built from --data %s; rebuilding them for --data %s", folder,
                       built_from, self.data_root.resolve())
        return True

    def process_dataset(self) -> None:
        folder = self.split_root / self.dataset
        tmp_folder = folder.with_name(folder.name + ".building")
        try:
            tmp_folder.mkdir(parents=True, exist_ok=True)
            (tmp_folder / DATA_ROOT_FILE).write_text(f"{self.data_root.resolve()}\n")
        except OSError as err:
            raise DataFileError(f"cannot write the split files into {tmp_folder} ({err.strerror}): "
                                f"choose a writable --split-root") from None
        vocab = self.split_dir / ("vocabulary_referit.txt" if self.dataset == "referit" else "vocabulary_Gref.txt")
        if not vocab.exists():
            raise DataFileError(f"missing vocabulary {vocab}: run 'make dmn-data' (the ReferIt splits tarball)")
        corpus = Corpus()
        corpus.load_file(vocab)
        atomic_save(corpus, tmp_folder / "corpus.pth")
        for split in SUPPORTED_DATASETS[self.dataset]["splits"]:
            logger.info("Processing %s: %s set", self.dataset, split)
            if self.dataset == "referit":
                entries = self._process_referit(split)
            else:
                entries = self._process_coco(split)
            atomic_save(entries, tmp_folder / f"{self.dataset}_{split}.pth")
        # The folder appears complete or not at all, so an interrupted run rebuilds it next time.
        if folder.exists():  # built from another --data: swapped out, then removed
            stale = folder.with_name(folder.name + ".stale")
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(folder, stale)
            os.replace(tmp_folder, folder)
            shutil.rmtree(stale)
        else:
            os.replace(tmp_folder, folder)

    def _process_referit(self, split: str) -> list[tuple[str, str, str]]:
        query_file = self.split_dir / "referit" / f"referit_query_{split}.json"
        if not query_file.exists():
            raise DataFileError(f"missing {query_file}: run 'make dmn-data' (the ReferIt splits tarball)")
        with open(query_file) as f:
            queries: dict[str, list[str]] = json.load(f)
        entries = []
        for name, name_queries in queries.items():
            image_file = name.split("_", 1)[0] + ".jpg"
            if image_file in REFERIT_SKIPPED_IMAGES or not (self.im_dir / image_file).exists():
                continue
            mat_path = self.mask_dir / f"{name}.mat"
            pth_path = self.mask_dir / f"{name}.pth"
            if not pth_path.exists():
                if not mat_path.exists():
                    raise DataFileError(f"missing mask {mat_path}: run 'make dmn-data' (ReferIt images and masks)")
                # Object pixels are the zeros of `segimg_t`; stored float64 as the original did. (The original then
                # deleted the .mat; we keep it.)
                mask = sio.loadmat(mat_path)["segimg_t"] == 0
                atomic_save(torch.from_numpy(mask.astype(np.float64)), pth_path)
            entries += [(image_file, f"{name}.pth", query) for query in name_queries]
        return entries

    def _process_coco(self, split: str) -> list[tuple[str, str, str]]:
        refer_name, split_by = SUPPORTED_DATASETS[self.dataset]["params"]
        refer = load_refer(self.dataset_root, refer_name, split_by)
        refs = sorted((ref for ref in refer.refs if ref["split"] == split), key=lambda ref: ref["file_name"])
        self.mask_dir.mkdir(parents=True, exist_ok=True)
        entries = []
        for ref in refs:
            image_file = f"COCO_train2014_{ref['image_id']:012d}.jpg"
            if not (self.im_dir / image_file).exists():
                continue
            mask_file = f"{ref['ann_id']}.pth"
            mask_path = self.mask_dir / mask_file
            if not mask_path.exists():
                info = refer.images[ref["image_id"]]
                seg = refer.anns[ref["ann_id"]]["segmentation"]
                mask = decode_segmentation(seg, info["height"], info["width"])
                atomic_save(torch.from_numpy(mask), mask_path)
            entries += [(image_file, mask_file, sentence["sent"]) for sentence in ref["sentences"]]
        return entries

    # ---- items ---------------------------------------------------------------------------------------------------
    def pull_item(self, idx: int) -> tuple[np.ndarray, torch.Tensor, str]:
        image_file, mask_file, phrase = self.images[idx]
        img = read_rgb_image(self.im_dir / image_file)
        mask_path = self.mask_dir / mask_file
        rebuild = f"delete it and {self.split_root / self.dataset} to rebuild the masks"
        if not mask_path.exists():
            raise DataFileError(f"missing mask {mask_path}: {rebuild}")
        try:
            mask = torch.load(mask_path, weights_only=True)
        except Exception:  # noqa: BLE001 - any unreadable mask file gets the same one-line answer
            raise CorruptSampleError(f"mask {mask_path} is unreadable: {rebuild}, or pass --skip_corrupt") from None
        return img, mask, phrase

    def annotation_source(self, idx: int) -> str:
        """Where sample ``idx``'s query comes from: the annotation file and the object's id in it."""
        object_id = Path(self.images[idx][1]).stem
        if self.dataset == "referit":
            return f"object {object_id} of {self.split_dir / 'referit' / f'referit_query_{self.split}.json'}"
        refer_name, split_by = SUPPORTED_DATASETS[self.dataset]["params"]
        return f"ann_id {object_id} of {self.dataset_root / refer_name / f'refs({split_by}).p'}"

    def shuffle_queries(self, seed: int) -> None:
        """Control experiment: give every sample the query of another, fixed by ``seed``."""
        order = np.random.default_rng(seed).permutation(len(self.images))
        self.images = [(img, mask, self.images[j][2]) for (img, mask, _), j in zip(self.images, order)]

    def tokenize_phrase(self, phrase: str) -> torch.Tensor:
        return self.corpus.tokenize(phrase, self.query_len)

    def untokenize_word_vector(self, words: torch.Tensor) -> list[str]:
        return self.corpus.dictionary[words.tolist()]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The sample, or None for a corrupt one when ``skip_corrupt`` is set (logged with its file)."""
        try:
            img, mask, phrase = self.pull_item(idx)
            try:
                words = self.tokenize_phrase(phrase)
            except EmptyQueryError as err:
                raise CorruptSampleError(
                    f"{err} for {self.annotation_source(idx)} (image {self.images[idx][0]}): write the query there "
                    f"and delete {self.split_root / self.dataset} to rebuild the split files, or pass --skip_corrupt"
                ) from None
        except CorruptSampleError as err:
            if not self.skip_corrupt:
                raise
            logger.warning("--skip_corrupt: skipping sample %d of %s %s: %s", idx, self.dataset, self.split, err)
            return None
        if self.transform is not None:
            img = self.transform(img)
        if self.annotation_transform is not None:
            mask = self.annotation_transform(mask)
        return img, mask, words


def collate_present(batch: list, collate: Callable = default_collate):
    """``collate`` over the samples that are not None (skipped as corrupt); None when none is left."""
    present = [sample for sample in batch if sample is not None]
    return collate(present) if present else None


def collate_padded(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], pad_index: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch samples of different sizes: images and masks zero-padded bottom/right (``valid`` marks real mask
    pixels), words right-padded with ``pad_index`` (``lengths`` gives the real counts)."""
    imgs, masks, words = zip(*batch)
    height = max(i.shape[-2] for i in imgs)
    width = max(i.shape[-1] for i in imgs)
    img_batch = imgs[0].new_zeros(len(imgs), imgs[0].shape[0], height, width)
    for b, img in enumerate(imgs):
        img_batch[b, :, : img.shape[-2], : img.shape[-1]] = img
    mh = max(m.shape[-2] for m in masks)
    mw = max(m.shape[-1] for m in masks)
    mask_batch = torch.zeros(len(masks), mh, mw)
    valid = torch.zeros(len(masks), mh, mw)
    for b, mask in enumerate(masks):
        mask_batch[b, : mask.shape[-2], : mask.shape[-1]] = mask
        valid[b, : mask.shape[-2], : mask.shape[-1]] = 1
    lengths = torch.tensor([len(w) for w in words])
    word_batch = torch.full((len(words), int(lengths.max())), pad_index, dtype=torch.long)
    for b, w in enumerate(words):
        word_batch[b, : len(w)] = w
    return img_batch, mask_batch, word_batch, lengths, valid
