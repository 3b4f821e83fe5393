"""The four datasets of CLIP4IDC: retrieval (one sample per sentence) and caption (one per pair), Spot and CLEVR."""
from __future__ import annotations

import json
import logging
import os
import random

import numpy as np
from torch.utils.data import Dataset

from dataloaders.rawimage_util import CorruptImageError, DataError, RawImageExtractor
from dataloaders.text import caption_target, text_input
from modules.tokenization_clip import ClipTokenizer

SUBSETS = ("train", "val", "test")
logger = logging.getLogger(__name__)


def load_json(path: str):
    if not os.path.isfile(path):
        raise DataError(f"annotation file not found: {path} (run 'make clip4idc-data' or check --data_path)")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} is not valid JSON: {err}") from err


def field(item: dict, key: str, path: str):
    if not isinstance(item, dict) or key not in item:
        raise DataError(f"{path}: an entry has no {key!r} field (expected {{'img_id': ..., 'sentences': [...]}})")
    return item[key]


def captions(value, path: str, pair: str) -> list[str]:
    """A pair's captions, checked to be a list of strings."""
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise DataError(f"{path}: the captions of {pair} are not a list of strings ({str(value)[:60]!r}); fix that "
                        "entry (run 'make clip4idc-data' for the original files)")
    return value


def warn_empty_captions(path: str, pairs: list[tuple[str, list[str]]]) -> int:
    """Empty captions are kept, as the original trains on them (the target is end-of-text alone); logs their count."""
    empty = [pair for pair, sentences in pairs for s in sentences if not s.strip()]
    if empty:
        logger.warning("%s: %d empty caption(s) (first in %s), kept as the original does", path, len(empty), empty[0])
    return len(empty)


class PairDataset(Dataset):
    """Shared state: pairs in file order, their sentences, and cut_off_points (end index of each pair's sentences)."""

    def __init__(self, subset: str, tokenizer: ClipTokenizer, max_words: int, image_resolution: int,
                 cache_images: bool, skip_corrupt: bool):
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        self.subset = subset
        self.skip_corrupt = skip_corrupt
        self.skipped: list[str] = []  # pairs left out by --skip_corrupt
        self.tokenizer = tokenizer
        self.max_words = max_words
        self.images = RawImageExtractor(image_resolution, cache_images)
        self.pairs: list[tuple[str, list[str]]] = []  # (pair id, sentences)

    def drop_corrupt_pairs(self) -> None:
        """--skip_corrupt: decode every image of the split once (kept with --cache_images) and leave out the pairs
        with an unreadable one, logging each."""
        kept = []
        for index, pair in enumerate(self.pairs):
            try:
                for path in self.pair_files(index):
                    self.images.get_image(path)
                kept.append(pair)
            except CorruptImageError as err:
                logger.warning("--skip_corrupt: skipping %s pair %s: %s", self.subset, pair[0], err)
                self.skipped.append(pair[0])
        self.pairs = kept

    def finish(self, per_sentence: bool) -> None:
        if self.skip_corrupt:
            self.drop_corrupt_pairs()
        self.samples: list[tuple[int, str | list[str]]] = []
        self.cut_off_points: list[int] = []
        for i, (_, sentences) in enumerate(self.pairs):
            if per_sentence:
                self.samples += [(i, s) for s in sentences]
            else:
                self.samples.append((i, sentences))
            self.cut_off_points.append(len(self.samples))
        self.multi_sentence_per_pair = True
        self.sentence_num, self.image_num = len(self.samples), len(self.pairs)

    def __len__(self) -> int:
        return len(self.samples)


class SpotDataset(PairDataset):
    """Spot-the-Diff: ``<data_path>/reformat_<subset>.json``, images ``<features_path>/<img_id>.png`` and ``_2.png``."""

    def __init__(self, subset: str, data_path: str, features_path: str, tokenizer: ClipTokenizer, max_words: int = 32,
                 image_resolution: int = 224, cache_images: bool = False, skip_corrupt: bool = False,
                 per_sentence: bool = True):
        super().__init__(subset, tokenizer, max_words, image_resolution, cache_images, skip_corrupt)
        self.features_path = features_path
        path = os.path.join(data_path, f"reformat_{subset}.json")
        for item in load_json(path):
            img_id = str(field(item, "img_id", path))
            self.pairs.append((img_id, captions(field(item, "sentences", path), path, f"img_id {img_id}")))
        warn_empty_captions(path, self.pairs)
        self.finish(per_sentence)

    def pair_files(self, index: int) -> list[str]:
        img_id = self.pairs[index][0]
        return [os.path.join(self.features_path, f"{img_id}.png"), os.path.join(self.features_path, f"{img_id}_2.png")]

    def pair_images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        bef, aft = self.pair_files(index)
        return self.images.get_image(bef), self.images.get_image(aft)

    def pair_name(self, index: int) -> str:
        return f"{self.pairs[index][0]}.png"


class ClevrDataset(PairDataset):
    """CLEVR-Change: ``splits.json``, ``change_captions.json``, ``no_change_captions.json`` and
    ``images/CLEVR_default_*.png``, ``sc_images/CLEVR_semantic_*.png``, ``nsc_images/CLEVR_nonsemantic_*.png``."""

    def __init__(self, subset: str, data_path: str, features_path: str, tokenizer: ClipTokenizer, max_words: int = 32,
                 image_resolution: int = 224, cache_images: bool = False, skip_corrupt: bool = False,
                 per_sentence: bool = True):
        super().__init__(subset, tokenizer, max_words, image_resolution, cache_images, skip_corrupt)
        self.root = data_path
        splits_path = os.path.join(data_path, "splits.json")
        splits = load_json(splits_path)
        if subset not in splits:
            raise DataError(f"{splits_path}: no {subset!r} split")
        wanted = set(int(i) for i in splits[subset])
        image_dir = os.path.join(data_path, "images")
        if not os.path.isdir(image_dir):
            raise DataError(f"image folder not found: {image_dir} (run 'make clip4idc-data' or check --data_path)")
        # id -> zero-padded number string, found by listing images/ as the original does
        self.numbers = {int(f.split(".")[0].split("_")[-1]): f.split(".")[0].split("_")[-1]
                        for f in os.listdir(image_dir) if f.endswith(".png")}
        change_path = os.path.join(data_path, "change_captions.json")
        no_change_path = os.path.join(data_path, "no_change_captions.json")
        change, self.no_change = load_json(change_path), load_json(no_change_path)
        for image_id in splits[subset]:
            if int(image_id) not in self.numbers:
                raise DataError(f"split image {image_id} has no images/CLEVR_default_*.png file in {image_dir}")
            name = f"CLEVR_default_{self.numbers[int(image_id)]}.png"
            for path, table in ((change_path, change), (no_change_path, self.no_change)):
                if name not in table:
                    raise DataError(f"{path}: no captions for {name}")
                captions(table[name], path, name)
            self.pairs.append((name, list(change[name])))
        assert len(self.pairs) == len(wanted)
        warn_empty_captions(change_path, self.pairs)
        warn_empty_captions(no_change_path, [(name, self.no_change[name]) for name, _ in self.pairs])
        self.finish(per_sentence)

    def image_file(self, folder: str, name: str, kind: str) -> str:
        return os.path.join(self.root, folder, name.replace("default", kind))

    def pair_files(self, index: int) -> list[str]:
        """Before, semantic after, distractor (non-semantic) after."""
        name = self.pairs[index][0]
        return [self.image_file("images", name, "default"), self.image_file("sc_images", name, "semantic"),
                self.image_file("nsc_images", name, "nonsemantic")]

    def pair_images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        bef, aft, _ = self.pair_files(index)
        return self.images.get_image(bef), self.images.get_image(aft)

    def distractor_image(self, index: int) -> np.ndarray:
        return self.images.get_image(self.pair_files(index)[2])

    def pair_name(self, index: int) -> str:
        return self.pairs[index][0].split("_")[-1]


class RetrievalMixin:
    """(ids, mask, segment, before, after, pair_mask) per sentence."""

    def retrieval_pair(self, pair: int):
        return self.pair_images(pair)

    def __getitem__(self, idx: int):
        pair, caption = self.samples[idx]
        ids, mask, seg = text_input(self.tokenizer, caption, self.max_words)
        bef, aft = self.retrieval_pair(pair)
        return ids, mask, seg, bef, aft, np.ones(2, dtype=np.int64)


class SpotRetrievalDataset(RetrievalMixin, SpotDataset):
    pass


class ClevrRetrievalDataset(RetrievalMixin, ClevrDataset):
    def retrieval_pair(self, pair: int):
        bef, aft = self.pair_images(pair)
        if self.subset == "train" and random.random() < 0.5:
            bef = self.distractor_image(pair)  # the original pairs the distractor "before" with the semantic "after"
        return bef, aft


class CaptionMixin:
    """One sample per pair; a random sentence of the pair each time it is drawn."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, per_sentence=False, **kwargs)

    def caption_sample(self, idx: int):
        """(pair, empty text input (ids, mask, seg), bef, aft, caption target) of sample ``idx``."""
        pair, sentences = self.samples[idx]
        text = text_input(self.tokenizer, None, self.max_words)
        bef, aft = self.pair_images(pair)
        caption = caption_target(self.tokenizer, random.choice(sentences), self.max_words)
        return pair, text, bef, aft, caption


class SpotCaptionDataset(CaptionMixin, SpotDataset):
    """(ids, mask, seg, bef, aft, pair_mask, in_cap, dec_mask, out_cap, "<img_id>.png")."""

    def __getitem__(self, idx: int):
        pair, text, bef, aft, caption = self.caption_sample(idx)
        return (*text, bef, aft, np.ones(2, dtype=np.int64), *caption, self.pair_name(pair))


class ClevrCaptionDataset(CaptionMixin, ClevrDataset):
    """(ids, mask, seg, bef, sc, nsc, pair_mask, in_cap, dec_mask, out_cap, nc_in, nc_mask, nc_out, "NNNNNN.png")."""

    def __getitem__(self, idx: int):
        pair, text, bef, aft, caption = self.caption_sample(idx)
        no_caption = caption_target(self.tokenizer, random.choice(self.no_change[self.pairs[pair][0]]), self.max_words)
        return (*text, bef, aft, self.distractor_image(pair), np.ones(2, dtype=np.int64), *caption,
                *no_caption, self.pair_name(pair))


DATASETS = {
    ("spot", "retrieval"): SpotRetrievalDataset,
    ("spot", "caption"): SpotCaptionDataset,
    ("clevr", "retrieval"): ClevrRetrievalDataset,
    ("clevr", "caption"): ClevrCaptionDataset,
}


def corpus_sentences(datatype: str, data_path: str) -> list[str]:
    """Every caption of every split (the compact vocabulary is built from these)."""
    if datatype == "spot":
        sentences = []
        for subset in SUBSETS:
            path = os.path.join(data_path, f"reformat_{subset}.json")
            sentences += [s for item in load_json(path)
                          for s in captions(field(item, "sentences", path), path, f"img_id {item.get('img_id')}")]
        return sentences
    sentences = []
    for name in ("change_captions.json", "no_change_captions.json"):
        path = os.path.join(data_path, name)
        sentences += [s for image, caps in load_json(path).items() for s in captions(caps, path, image)]
    return sentences
