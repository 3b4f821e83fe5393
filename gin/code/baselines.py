"""Trivial baselines of the toy grounding task: pick a random object of the image, or its largest object.

Both are expectations computed exactly from every object's box (no sampling), counted as eval_script counts
(IoU > threshold). The toy CSVs hold only the referred boxes, so every object's box comes from replaying the
seeded generator that wrote them (toydata.zsgnet_csv), checked against the CSVs' boxes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from shared_eval.boxes import paired_box_iou

from eval_script import load_gt_boxes
from errors import DataError

Box = list[float]
BOX_DECIMALS_TOLERANCE = 0.006  # the CSVs write corners with two decimals


def matches_ground_truth(gt: Box, boxes: list[Box], threshold: float) -> torch.Tensor:
    """Which of ``boxes`` would count as correct for ``gt`` (IoU > threshold, eval_script's rule)."""
    return paired_box_iou(boxes, [gt] * len(boxes)) > threshold


def random_object_accuracy(gt_boxes: list[Box], objects: list[list[Box]], threshold: float = 0.5) -> float:
    """Expected accuracy of picking one of the image's objects uniformly at random: per query, the fraction of its
    image's objects that count as correct, averaged over the queries."""
    return float(np.mean([matches_ground_truth(gt, boxes, threshold).double().mean().item()
                          for gt, boxes in zip(gt_boxes, objects, strict=True)]))


def largest_object_accuracy(gt_boxes: list[Box], objects: list[list[Box]], threshold: float = 0.5) -> float:
    """Expected accuracy of picking the image's largest box (ties broken uniformly at random)."""
    scores = []
    for gt, boxes in zip(gt_boxes, objects, strict=True):
        areas = torch.tensor([(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes], dtype=torch.float64)
        largest = areas >= areas.max() * (1 - 1e-6)  # equal sizes tie despite rounding in x2 - x1
        scores.append(matches_ground_truth(gt, boxes, threshold)[largest].double().mean().item())
    return float(np.mean(scores))


def replay_toy_scenes(seed: int, images_per_split: list[int], width: int, height: int) -> dict[str, list[Box]]:
    """Every object's box per image name, drawing from the generator in the order toydata.zsgnet_csv.write does
    (scene, then per pair the referred member and its phrasings; splits one after the other)."""
    from toydata.zsgnet_csv import FIRST_ID, expression, sample_pairs

    rng = np.random.default_rng(seed)
    boxes: dict[str, list[Box]] = {}
    image_id = FIRST_ID
    for count in images_per_split:
        last = image_id + count
        while image_id < last:
            scene = sample_pairs(rng, width, height)
            if scene is None:
                continue
            for pair in (0, 1):
                member = int(rng.integers(2))
                expression(scene.objects[2 * pair + member], scene.objects[2 * pair + 1 - member], rng)
            boxes[f"{image_id}.jpg"] = [list(obj.box) for obj in scene.objects]  # inside the image: never clipped
            image_id += 1
    return boxes


def toy_objects(toy: Path, split: str, seed: int) -> tuple[list[Box], list[list[Box]]]:
    """The ground-truth box of each row of ``toy/csv_dir/<split>.csv`` and every object's box of its image."""
    csv_dir = toy / "csv_dir"
    missing = [str(csv_dir / f"{s}.csv") for s in ("train_flat", "val", "test") if not (csv_dir / f"{s}.csv").is_file()]
    if missing:
        raise DataError(f"toy CSV {missing[0]} not found (run 'make gin-toy' or pass --toy DIR)")
    names = {s: pd.read_csv(csv_dir / f"{s}.csv", usecols=["img_id"])["img_id"] for s in ("train_flat", "val", "test")}
    width, height = Image.open(toy / "saiapr_tc12_images" / names["test"].iloc[0]).size
    scenes = replay_toy_scenes(seed, [n.nunique() for n in names.values()], width, height)
    gt_boxes = load_gt_boxes(csv_dir / f"{split}.csv")
    objects = [scenes.get(name, []) for name in names[split]]
    for row, (gt, boxes) in enumerate(zip(gt_boxes, objects)):
        if not any(max(abs(a - b) for a, b in zip(gt, box)) < BOX_DECIMALS_TOLERANCE for box in boxes):
            raise DataError(f"{csv_dir / split}.csv row {row}: its box is not an object of the toy scenes of seed "
                            f"{seed}; pass the seed the toy set was written with (--toy_seed) or re-create it "
                            f"with 'make gin-toy'")
    return gt_boxes, objects


def toy_baselines(toy: Path, split: str = "test", seed: int = 0, threshold: float = 0.5) -> dict[str, float]:
    """{"random object": ..., "largest object": ...} accuracies on one toy split."""
    gt_boxes, objects = toy_objects(toy, split, seed)
    return {"random object": random_object_accuracy(gt_boxes, objects, threshold),
            "largest object": largest_object_accuracy(gt_boxes, objects, threshold)}
