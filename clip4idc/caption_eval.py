"""Score hypotheses against a COCO-format ground truth (only the hypothesis ids), as pycocoevalcap's COCOEvalCap."""
from __future__ import annotations

import json
import os

from dataloaders.rawimage_util import DataError
from shared_eval.captions import evaluate


def load_gt(path: str) -> dict[str, list[str]]:
    """{image_id: [captions]} from a ``*_total_change_captions_reformat.json`` file."""
    if not os.path.isfile(path):
        raise DataError(f"ground truth not found: {path} (write it with 'python gt/eval_utils.py' or check --gt_dir)")
    data = json.load(open(path))
    if "annotations" not in data:
        raise DataError(f"{path}: no 'annotations' field (expected a COCO caption file)")
    gts: dict[str, list[str]] = {}
    for ann in data["annotations"]:
        gts.setdefault(ann["image_id"], []).append(ann["caption"])
    return gts


def score_captions(gts: dict[str, list[str]], results: list[dict], meteor: bool = True) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D) of ``results`` ([{"caption", "image_id"}]) on their ids only."""
    res = {r["image_id"]: [r["caption"]] for r in results}
    missing = [k for k in res if k not in gts]
    if missing:
        raise DataError(f"hypothesis ids {missing[:3]} are not in the ground truth (wrong --gt_dir or --datatype?)")
    refs = {k: gts[k] for k in res}
    return evaluate(refs, res, meteor=meteor)


def score_parts(gts: dict[str, list[str]], results: list[dict], meteor: bool = True) -> dict[str, dict[str, float]]:
    """"total" as the original, plus "sc" (changed pairs) and "nsc" (CLEVR distractor pairs, ids ending in _n)."""
    parts = {"total": results,
             "sc": [r for r in results if not r["image_id"].endswith("_n")],
             "nsc": [r for r in results if r["image_id"].endswith("_n")]}
    return {name: score_captions(gts, part, meteor) for name, part in parts.items() if part}
