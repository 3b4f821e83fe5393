"""Reading the refer library's files directly (no dependency on the unmaintained `refer` package).

``<root>/<refcoco|refcoco+|refcocog>/refs(<split_by>).p`` is a pickled list of refs (``ref_id, ann_id, image_id,
category_id, split, sentences[{sent, sent_id, tokens, raw}]`` and ``file_name``); ``instances.json`` holds COCO
``images``, ``annotations`` (polygon or RLE ``segmentation``) and ``categories``.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as cocomask


class DataFileError(FileNotFoundError):
    """A dataset file is missing or unreadable; the message names it and the fix."""


class _PlainUnpickler(pickle.Unpickler):
    """refs(*).p hold only lists, dicts, strings and numbers: refuse anything that would import code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a refs file")


def load_refs(path: Path) -> list[dict]:
    if not path.exists():
        raise DataFileError(f"missing {path}: run 'make dmn-data' (or download_dataset.sh) to fetch the refer files")
    with open(path, "rb") as f:
        # Python 2 pickles (the released refs files) need a byte-transparent decoding of their str objects.
        return _PlainUnpickler(f, encoding="latin1").load()


@dataclass
class ReferAnnotations:
    refs: list[dict]
    images: dict[int, dict]
    anns: dict[int, dict]


def load_refer(data_root: Path, dataset: str, split_by: str) -> ReferAnnotations:
    """The refs and COCO instances of one refer dataset (``dataset`` = refcoco, refcoco+ or refcocog)."""
    folder = Path(data_root) / dataset
    refs = load_refs(folder / f"refs({split_by}).p")
    instances_path = folder / "instances.json"
    if not instances_path.exists():
        raise DataFileError(f"missing {instances_path}: run 'make dmn-data' to fetch the refer files")
    with open(instances_path) as f:
        instances = json.load(f)
    images = {img["id"]: img for img in instances["images"]}
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    return ReferAnnotations(refs, images, anns)


def decode_segmentation(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """(height, width) float32 {0, 1}: polygons/RLE decoded with pycocotools, parts merged with max."""
    rles = cocomask.frPyObjects(segmentation, height, width)
    decoded = cocomask.decode(rles)
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    return np.max(decoded, axis=2).astype(np.float32)
