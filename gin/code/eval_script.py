"""Accuracy of a predictions pickle against a ground-truth CSV (the original's ``eval_script.py``).

    python code/eval_script.py preds.pkl gt.csv [--acc_iou_thresh=0.5] [--num_gpus=N]

The pickle is a list of ``{'id': row index into gt.csv, 'pred_boxes': [x1, y1, x2, y2] pixels, ...}``. Counting as the
original: only the first prediction of each id counts; correct when IoU > threshold (strict; float32, no +1 pixel,
union + 1e-8); accuracy = correct / number of distinct ids in the pickle. When ``preds.pkl`` does not exist and
``--num_gpus=N`` is given, the per-rank files ``0_preds.pkl`` .. ``N-1_preds.pkl`` are merged into it first.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pandas as pd
from shared_eval.boxes import paired_box_iou

from config import decode_value, parse_argv
from data.loader import parse_bbox
from errors import DataError, GinError, exit_with
from util.checkpoint import atomic_write_bytes


def merge_rank_files(pred_file: Path, num_gpus: int) -> None:
    """Concatenate ``<rank>_<name>`` files (DDP runs) into ``pred_file``."""
    parts = [pred_file.parent / f"{r}_{pred_file.name}" for r in range(num_gpus)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise DataError(f"per-rank prediction files missing: {', '.join(missing)} (check --num_gpus)")
    merged: list[dict] = []
    for p in parts:
        merged += load_predictions(p)
    atomic_write_bytes(pred_file, lambda f: pickle.dump(merged, f))


def load_gt_boxes(gt_file: Path) -> list[list[float]]:
    if not gt_file.is_file():
        raise DataError(f"ground-truth CSV {gt_file} not found (run 'make gin-data')")
    try:
        df = pd.read_csv(gt_file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{gt_file} is not a readable CSV ({type(exc).__name__}); pass the split's csv_dir/*.csv") from None
    if "bbox" not in df.columns:
        raise DataError(f"{gt_file} has no 'bbox' column; expected img_id,bbox,query")
    boxes = [parse_bbox(b) for b in df["bbox"]]
    bad = [row for row, box in enumerate(boxes) if box is None]
    if bad:
        raise DataError(f"{gt_file}: row {bad[0]} has a malformed bbox {df['bbox'][bad[0]]!r}; expected "
                        f"'[x1, y1, x2, y2]' (re-create the CSVs with 'make gin-data')")
    return boxes


def load_predictions(pred_file: Path) -> list[dict]:
    """The pickled list of ``{'id', 'pred_boxes', ...}`` dicts main_dist.py writes."""
    try:
        with pred_file.open("rb") as f:
            predictions = pickle.load(f)
    except Exception as exc:  # noqa: BLE001 - a foreign pickle can raise anything
        raise DataError(f"predictions file {pred_file} could not be read ({type(exc).__name__}); pass a "
                        f"predictions/UID/*_preds.pkl written by main_dist.py") from None
    if not (isinstance(predictions, list)
            and all(isinstance(p, dict) and {"id", "pred_boxes"} <= set(p) for p in predictions)):
        raise DataError(f"predictions file {pred_file} is not a list of {{'id', 'pred_boxes'}} dicts; pass a "
                        f"predictions/UID/*_preds.pkl written by main_dist.py")
    return predictions


def evaluate(pred_file: str | Path, gt_file: str | Path, acc_iou_thresh: float = 0.5, num_gpus: int = 0
             ) -> tuple[float, int, int]:
    """(accuracy, correct, total) with the original's counting."""
    pred_file, gt_file = Path(pred_file), Path(gt_file)
    if not pred_file.is_file():
        if not num_gpus:
            raise DataError(f"predictions file {pred_file} not found (for DDP runs pass --num_gpus=N to merge "
                            f"0_{pred_file.name} ...)")
        merge_rank_files(pred_file, num_gpus)
    predictions = load_predictions(pred_file)
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
        threshold, num_gpus = decode_value(flags.get("acc_iou_thresh", "0.5")), decode_value(flags.get("num_gpus", "0"))
        if not isinstance(threshold, (int, float)) or isinstance(num_gpus, bool) or not isinstance(num_gpus, int):
            raise DataError(f"--acc_iou_thresh={threshold!r} / --num_gpus={num_gpus!r}: use a number and an integer")
        acc, correct, total = evaluate(positional[0], positional[1], float(threshold), num_gpus)
    except GinError as exc:
        exit_with(exc)
    print(f"accuracy {acc:.4f} ({correct}/{total})")
    return acc, correct, total


if __name__ == "__main__":
    main()
