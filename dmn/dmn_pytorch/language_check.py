"""Does the model read the query? Train on toy data three ways and compare with the query-blind baseline.

Variants: 1. as built (pixel-major multimodal SRU), 2. ``--per-pixel-msru``, 3. ``--per-pixel-msru
--shuffle-queries`` (control: queries shuffled across training samples). Each follows the original README's
schedule: a low-res model first, then the high-res model (``--high-res``) started from the low-res weights.
Reported per stage: toy val cumulative IoU (best over the evaluations) and the referred-first rate (how often the
referred object gets a higher mean probability than every other object of its image; chance is about 1 / number
of objects). The baseline "predict every shape of the image" is computed from the annotations. The per-pixel
high-res model should beat it by >= 0.15 cumulative IoU; the control should not. Needs a GPU or >= 30 CPU
minutes; ``--jobs 2`` trains two variants at once (``make dmn-language-check``, also part of ``make bench``)::

    python -m dmn_pytorch.language_check --data ../data/toy/dmn --out ../runs/bench/dmn_language_check --jobs 2
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from shared_eval.masks import MaskIoU

from .data.refer_files import decode_segmentation, load_refer
from .models.checkpoint import load_dmn_weights, read_state_dict
from .train import build_datasets, build_model, discard_training_state, get_args_parser
from .train import main as train_main

VARIANTS: dict[str, list[str]] = {
    "as_built": [],
    "per_pixel": ["--per-pixel-msru"],
    "per_pixel_shuffled_queries": ["--per-pixel-msru", "--shuffle-queries"],
}
REQUIRED_MARGIN = 0.15


def model_flags(args: argparse.Namespace, seed: int, lr: float) -> list[str]:
    """The toy-sized DMN (dpn_toy trunk, 64-wide language and multimodal parts) and the data flags."""
    return ["--data", str(args.data), "--split-root", str(Path(args.data) / "splits"), "--dataset", "unc",
            "--val", "val", "--backend", "dpn_toy", "--vis-size", "560", "--num-filters", "10", "--lang-layers", "3",
            "--mix-we", "--size", str(args.size), "--emb-size", "64", "--hid-size", "64", "--mixed-size", "64",
            "--hid-mixed-size", "64", "--upsamp-width", str(args.upsamp_width), "--no-pretrained", "--workers", "0",
            "--accum-iters", "1", "--log-interval", "1000", "--backup-iters", str(10**9),
            "--seed", str(seed), "--lr", str(lr)] + (["--no-cuda"] if args.no_cuda else [])


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


def referred_first(prob: torch.Tensor, target: torch.Tensor, others: list[torch.Tensor]) -> bool:
    """True when the mean probability inside ``target`` beats the mean inside each of the ``others`` masks."""
    referred = prob[target].mean()
    return all(bool(referred > prob[other].mean()) for other in others)


@torch.no_grad()
def referred_first_rate(train_argv: list[str], weights: Path) -> float:
    """Referred-first rate of ``weights`` over the val samples whose image holds more than one object."""
    args = get_args_parser().parse_args(train_argv)
    _, val_set = build_datasets(args)
    assert val_set is not None
    net = build_model(args, len(val_set.corpus))
    load_dmn_weights(net, read_state_dict(weights), str(weights))
    net.train()  # as the original evaluates: BatchNorm statistics of each image (engine.evaluate)
    objects: dict[str, set[str]] = defaultdict(set)
    first_sample: dict[str, int] = {}  # mask file -> index of a sample that loads it
    for index, (image_file, mask_file, _) in enumerate(val_set.images):
        objects[image_file].add(mask_file)
        first_sample.setdefault(mask_file, index)
    masks: dict[str, torch.Tensor] = {}

    def object_mask(mask_file: str) -> torch.Tensor:
        if mask_file not in masks:
            mask = val_set[first_sample[mask_file]][1]
            masks[mask_file] = mask.reshape(mask.shape[-2:]) > 0.5
        return masks[mask_file]

    scores = MaskIoU(align_corners=True)
    hits = count = 0
    for index, (image_file, mask_file, _) in enumerate(val_set.images):
        if len(objects[image_file]) < 2:
            continue
        img, mask, words = val_set[index]
        target = masks.setdefault(mask_file, mask.reshape(mask.shape[-2:]) > 0.5)
        logits = net(img[None], words[None])
        # Sigmoid, then bilinear upsampling with aligned corners, as the evaluation does.
        prob = scores.probabilities(logits[0, 0], tuple(target.shape))
        others = [object_mask(other) for other in sorted(objects[image_file] - {mask_file})]
        hits += referred_first(prob, target, others)
        count += 1
    return hits / max(count, 1)


def run_stage(argv: list[str], folder: Path) -> dict:
    discard_training_state(argv)  # a rerun retrains
    results = train_main(argv)
    curve = [e["max_iou"] for e in results["evaluations"]]
    return {"best_val_iou": max(curve), "curve": curve,
            "referred_first_rate": referred_first_rate(argv, folder / "dmn_best_weights.pth")}


def run_variant(name: str, args: argparse.Namespace) -> dict:
    """Low-res training, then high-res training from the best low-res weights (the original README's schedule)."""
    # force: a worker process reused for the next variant gets that variant's prefix
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", force=True)
    out = Path(args.out) / name
    report = {}
    low_res_weights = out / "low_res" / "dmn_best_weights.pth"
    # The high-res stage gets the next seed: another sample order (its initialisation comes from the low-res run).
    schedule = (("low_res", args.low_res_epochs, args.lr), ("high_res", args.high_res_epochs, args.high_res_lr))
    for seed, (stage, epochs, lr) in enumerate(schedule, start=args.seed):
        folder = out / stage
        # High-res starts from the low-res weights (output_collapse dropped), as the README's schedule.
        start = ["--high-res", "--snapshot", str(low_res_weights)] if stage == "high_res" else [
            "--snapshot", str(folder / "none.pth")]
        argv = model_flags(args, seed, lr) + VARIANTS[name] + start + [
            "--save-folder", str(folder), "--optim-snapshot", str(folder / "none.pth"),
            "--epochs", str(epochs), "--max-batches-per-epoch", str(args.epoch_steps)]
        start_cpu = time.process_time()
        report[stage] = run_stage(argv, folder)
        report[stage]["cpu_seconds"] = time.process_time() - start_cpu
    return report


def check_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="toy refer data (python -m toydata.refer --out DIR)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the runs and language_check.json")
    parser.add_argument("--low-res-epochs", type=int, default=4, help="low-res training epochs per variant")
    parser.add_argument("--high-res-epochs", type=int, default=2, help="high-res training epochs per variant")
    parser.add_argument("--epoch-steps", type=int, default=1500,
                        help="an epoch is the train split or at most this many samples; evaluation after each")
    parser.add_argument("--size", type=int, default=256, help="image size (the multimodal map is size / 32 wide)")
    parser.add_argument("--upsamp-width", type=int, default=32, help="first upsampling conv width")
    parser.add_argument("--lr", type=float, default=2e-3, help="low-res learning rate")
    parser.add_argument("--high-res-lr", type=float, default=5e-4,
                        help="high-res learning rate (at 2e-3 the fine-tuning can wash out the low-res query use)")
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at once (one process each)")
    parser.add_argument("--no-cuda", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = check_args_parser().parse_args(argv)
    report: dict = {"every_shape_baseline": every_shape_baseline(args.data), "variants": {}}
    if args.jobs == 1:
        report["variants"] = {name: run_variant(name, args) for name in args.variants}
    else:
        # spawn: each variant gets a fresh interpreter (no forked torch thread pools)
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {name: pool.submit(run_variant, name, args) for name in args.variants}
            report["variants"] = {name: future.result() for name, future in futures.items()}
    if "per_pixel" in report["variants"]:
        best = report["variants"]["per_pixel"]["high_res"]["best_val_iou"]
        report["per_pixel_margin_over_baseline"] = best - report["every_shape_baseline"]
        report["passes"] = report["per_pixel_margin_over_baseline"] >= REQUIRED_MARGIN
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "language_check.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, args.out / "language_check.json")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
