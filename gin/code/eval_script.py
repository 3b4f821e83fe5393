"""Accuracy of a predictions pickle against a ground-truth CSV (the original's ``eval_script.py``).

    python code/eval_script.py preds.pkl gt.csv [--acc_iou_thresh=0.5] [--num_gpus=N]

The pickle is a list of ``{'id': row index into gt.csv, 'pred_boxes': [x1, y1, x2, y2] pixels, ...}``. Counting as the
original: only the first prediction of each id counts; correct when IoU > threshold (strict; float32, no +1 pixel,
union + 1e-8); accuracy = correct / number of distinct ids in the pickle. When ``preds.pkl`` does not exist and
``--num_gpus=N`` is given, the per-rank files ``0_preds.pkl`` .. ``N-1_preds.pkl`` are merged into it first.
"""
from __future__ import annotations

import ast
import pickle
import sys
from pathlib import Path

import pandas as pd
from shared_eval.boxes import paired_box_iou

from config import decode_value, parse_argv
from errors import DataError, GinError, one_line
from util.checkpoint import atomic_write_bytes


def merge_rank_files(pred_file: Path, num_gpus: int) -> None:
    """Concatenate ``<rank>_<name>`` files (DDP runs) into ``pred_file``."""
    parts = [pred_file.parent / f"{r}_{pred_file.name}" for r in range(num_gpus)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise DataError(f"per-rank prediction files missing: {', '.join(missing)} (check --num_gpus)")
    merged: list[dict] = []
    for p in parts:
        with p.open("rb") as f:
            merged += pickle.load(f)
    atomic_write_bytes(pred_file, lambda f: pickle.dump(merged, f))


def load_gt_boxes(gt_file: Path) -> list[list[float]]:
    if not gt_file.is_file():
        raise DataError(f"ground-truth CSV {gt_file} not found (run 'make gin-data')")
    df = pd.read_csv(gt_file)
    if "bbox" not in df.columns:
        raise DataError(f"{gt_file} has no 'bbox' column; expected img_id,bbox,query")
    return [ast.literal_eval(b) for b in df["bbox"]]


def evaluate(pred_file: str | Path, gt_file: str | Path, acc_iou_thresh: float = 0.5, num_gpus: int = 0
             ) -> tuple[float, int, int]:
    """(accuracy, correct, total) with the original's counting."""
    pred_file, gt_file = Path(pred_file), Path(gt_file)
    if not pred_file.is_file():
        if not num_gpus:
            raise DataError(f"predictions file {pred_file} not found (for DDP runs pass --num_gpus=N to merge "
                            f"0_{pred_file.name} ...)")
        merge_rank_files(pred_file, num_gpus)
    with pred_file.open("rb") as f:
        predictions = pickle.load(f)
    gt_boxes = load_gt_boxes(gt_file)
    seen: dict[int, list[float]] = {}
    for p in predictions:
        seen.setdefault(int(p["id"]), p["pred_boxes"])
    if not seen:
        raise DataError(f"{pred_file} holds no predictions")
    ids = sorted(seen)
    if ids[-1] >= len(gt_boxes) or ids[0] < 0:
        raise DataError(f"prediction id {ids[-1]} is outside {gt_file} ({len(gt_boxes)} rows): wrong split?")
    # shared_eval's ZSGNet IoU: float32, no +1 pixel, union + 1e-8; the original's strict '>' test.
    iou = paired_box_iou([seen[i] for i in ids], [gt_boxes[i] for i in ids])
    correct = int((iou > acc_iou_thresh).sum())
    return correct / len(ids), correct, len(ids)


def main(argv: list[str] | None = None) -> tuple[float, int, int]:
    argv = sys.argv[1:] if argv is None else argv
    try:
        positional = [a for a in argv if not a.startswith("--")]
        if len(positional) != 2:
            raise DataError("usage: eval_script.py preds.pkl gt.csv [--acc_iou_thresh=0.5] [--num_gpus=N]")
        _, flags = parse_argv([positional[0]] + [a for a in argv if a.startswith("--")])
        unknown = set(flags) - {"acc_iou_thresh", "num_gpus"}
        if unknown:
            raise DataError(f"unknown flag(s) {sorted(unknown)}; valid: --acc_iou_thresh, --num_gpus")
        acc, correct, total = evaluate(positional[0], positional[1],
                                       float(decode_value(flags.get("acc_iou_thresh", "0.5"))),
                                       int(decode_value(flags.get("num_gpus", "0"))))
    except GinError as exc:
        raise SystemExit(f"error: {one_line(exc)}") from None
    print(f"accuracy {acc:.4f} ({correct}/{total})")
    return acc, correct, total


if __name__ == "__main__":
    main()
