"""Does the model use the query? Train on the toy data three ways and compare with the query-blind baseline.

1. as built (pixel-major multimodal SRU), 2. ``--per-pixel-msru``, 3. ``--per-pixel-msru --shuffle-queries``
(control: queries shuffled across training samples). The baseline "predict every shape of the image" is computed
from the annotations. The per-pixel model should beat it by >= 0.15 cumulative IoU on toy val; the control should
not. Needs a GPU or >= 30 CPU minutes (``--steps``):

    python -m dmn_pytorch.language_check --data data/toy/dmn --out runs/dmn/language_check --steps 20000
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from .data.refer_files import decode_segmentation, load_refer
from .train import main as train_main

MODEL = ["--dataset", "unc", "--val", "val", "--backend", "dpn_toy", "--vis-size", "560", "--num-filters", "10",
         "--lang-layers", "3", "--mix-we", "--size", "64", "--emb-size", "64", "--hid-size", "64", "--mixed-size",
         "64", "--hid-mixed-size", "64", "--high-res", "--upsamp-width", "32", "--no-pretrained", "--workers", "0",
         "--lr", "2e-3", "--accum-iters", "1", "--log-interval", "1000", "--backup-iters", str(10**9)]


def every_shape_baseline(data: Path, split: str = "val") -> float:
    """Cumulative IoU of predicting the union of all objects of the image, whatever the query."""
    refer = load_refer(data / "other", "refcoco", "unc")
    by_image: dict[int, list[dict]] = {}
    for ann in refer.anns.values():
        by_image.setdefault(ann["image_id"], []).append(ann)
    inter = union = 0.0
    for ref in refer.refs:
        if ref["split"] != split:
            continue
        info = refer.images[ref["image_id"]]
        target = decode_segmentation(refer.anns[ref["ann_id"]]["segmentation"], info["height"], info["width"]) > 0
        shapes = np.zeros_like(target)
        for ann in by_image[ref["image_id"]]:
            shapes |= decode_segmentation(ann["segmentation"], info["height"], info["width"]) > 0
        inter += len(ref["sentences"]) * (target & shapes).sum()
        union += len(ref["sentences"]) * (target | shapes).sum()
    return float(inter / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=20000, help="training steps per variant")
    parser.add_argument("--epoch-steps", type=int, default=2000, help="evaluate every this many steps")
    parser.add_argument("--no-cuda", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    data = Path(args.data)
    report = {"every_shape_baseline": every_shape_baseline(data), "variants": {}}
    variants = {"as_built": [], "per_pixel": ["--per-pixel-msru"],
                "per_pixel_shuffled_queries": ["--per-pixel-msru", "--shuffle-queries"]}
    for name, flags in variants.items():
        folder = out / name
        results = train_main(MODEL + flags + (["--no-cuda"] if args.no_cuda else []) + [
            "--data", str(data), "--split-root", str(data / "splits"), "--save-folder", str(folder),
            "--snapshot", str(folder / "none.pth"), "--optim-snapshot", str(folder / "none.pth"),
            "--epochs", str(max(args.steps // args.epoch_steps, 1)), "--max-batches-per-epoch", str(args.epoch_steps)])
        best = max(e["max_iou"] for e in results["evaluations"])
        report["variants"][name] = {"best_val_iou": best, "curve": [e["max_iou"] for e in results["evaluations"]]}
        print(name, best, flush=True)
    per_pixel = report["variants"]["per_pixel"]["best_val_iou"]
    report["per_pixel_margin_over_baseline"] = per_pixel - report["every_shape_baseline"]
    report["passes"] = report["per_pixel_margin_over_baseline"] >= 0.15
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "language_check.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out / "language_check.json")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
