"""Toy demo: the untrained model, then the language check's two-stage schedule cut to the demo's CPU budget.

Stages (toy val, cumulative IoU, against the query-blind "predict every shape of the image" baseline on the same
split): evaluate the untrained high-res model; train low-res (per-pixel multimodal SRU, size 192: a 6 x 6
multimodal map); train high-res from the low-res weights at a lower learning rate and evaluate (~330 CPU s in all). Writes
``demo_result.json``, a composite figure (image, query, ground truth, prediction for val queries that name
different objects of one image) and the IoU-vs-threshold curves.

``python -m dmn_pytorch.demo --data data/toy/dmn --out runs/demo/dmn`` (``make dmn-demo``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from shared_eval.masks import THRESHOLDS, MaskIoU  # noqa: E402

from .data.referit_loader import ReferDataset  # noqa: E402
from .language_check import every_shape_baseline  # noqa: E402
from .models.checkpoint import load_dmn_weights, read_state_dict  # noqa: E402
from .train import build_datasets, build_model, discard_training_state, get_args_parser  # noqa: E402
from .train import main as train_main  # noqa: E402

FIGURE_PAIRS = 3  # images shown, two queries (two different referred objects) each


def model_flags(data: Path, size: int) -> list[str]:
    """The language check's toy model: dpn_toy trunk, 64-wide language and multimodal parts, per-pixel mSRU."""
    return ["--data", str(data), "--split-root", str(data / "splits"), "--dataset", "unc", "--backend", "dpn_toy",
            "--vis-size", "560", "--num-filters", "10", "--lang-layers", "3", "--mix-we", "--size", str(size),
            "--emb-size", "64", "--hid-size", "64", "--mixed-size", "64", "--hid-mixed-size", "64",
            "--upsamp-width", "32", "--no-pretrained", "--per-pixel-msru", "--workers", "0", "--accum-iters", "1",
            "--log-interval", "500", "--backup-iters", str(10**9)]


def stage_argv(args: argparse.Namespace, stage: str) -> list[str]:
    """Training flags of one stage: ``untrained`` (evaluation only), ``low_res`` or ``high_res``."""
    folder = args.out / "weights" / stage
    none = str(folder / "none.pth")  # no snapshot, no optimizer state: start from scratch
    common = model_flags(args.data, args.size) + ["--save-folder", str(folder), "--optim-snapshot", none]
    if stage == "untrained":
        return common + ["--high-res", "--val", "val", "--snapshot", none, "--epochs", "0", "--eval-first",
                         "--seed", str(args.seed)]
    if stage == "low_res":  # no evaluation: the low-res model is only the high-res stage's starting point
        return common + ["--snapshot", none, "--seed", str(args.seed), "--lr", str(args.lr),
                         "--epochs", str(args.low_res_epochs), "--max-batches-per-epoch", str(args.low_res_steps)]
    low_res_weights = args.out / "weights" / "low_res" / "dmn_best_weights.pth"
    # The next seed: another sample order (the initialisation comes from the low-res weights).
    return common + ["--high-res", "--val", "val", "--snapshot", str(low_res_weights), "--seed", str(args.seed + 1),
                     "--lr", str(args.high_res_lr), "--epochs", "1", "--max-batches-per-epoch",
                     str(args.high_res_steps)]


def figure_samples(val_set: ReferDataset, pairs: int) -> list[int]:
    """Indices of two queries naming different objects, for the first ``pairs`` val images that have them."""
    first_query: dict[str, dict[str, int]] = defaultdict(dict)
    for index, (image_file, mask_file, _) in enumerate(val_set.images):
        first_query[image_file].setdefault(mask_file, index)
    chosen = [list(by_mask.values())[:2] for by_mask in first_query.values() if len(by_mask) >= 2]
    return [index for pair in chosen[:pairs] for index in pair]


@torch.no_grad()
def predict_samples(argv: list[str], weights: Path, threshold: float) -> list[dict]:
    """Image, query, ground truth, thresholded prediction and IoU of the figure's val samples."""
    args = get_args_parser().parse_args(argv)
    _, val_set = build_datasets(args)
    assert val_set is not None
    net = build_model(args, len(val_set.corpus))
    load_dmn_weights(net, read_state_dict(weights), str(weights))
    net.train()  # as engine.evaluate: BatchNorm statistics of each image, as the original evaluated
    scores = MaskIoU(align_corners=True)
    samples = []
    for index in figure_samples(val_set, FIGURE_PAIRS):
        img, mask, words = val_set[index]
        target = mask.reshape(mask.shape[-2:]) > 0.5
        prob = scores.probabilities(net(img[None], words[None])[0, 0], tuple(target.shape))
        predicted = prob > threshold
        union = int((predicted | target).sum())
        samples.append({"image": val_set.pull_item(index)[0], "query": val_set.images[index][2], "target": target.numpy(),
                        "predicted": predicted.numpy(),
                        "iou": int((predicted & target).sum()) / union if union else 1.0})
    return samples


def highlight(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """The image dimmed outside ``mask`` and tinted with ``colour`` inside it."""
    out = image.astype(np.float32) * 0.3
    out[mask] = image[mask] * 0.4 + np.array(colour, dtype=np.float32) * 0.6
    return out.round().astype(np.uint8)


def plot_samples(samples: list[dict], threshold: float, path: Path) -> None:
    """Two samples per row, each as image (query above) | ground truth | prediction (IoU above): 1500 px wide."""
    rows = (len(samples) + 1) // 2
    fig, axes = plt.subplots(rows, 6, figsize=(15, 2.9 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(samples) * 3:]:
        ax.axis("off")
    for k, sample in enumerate(samples):
        image_ax, target_ax, predicted_ax = axes[k // 2, 3 * (k % 2): 3 * (k % 2) + 3]
        image_ax.imshow(sample["image"])
        image_ax.set_title(f"\"{sample['query']}\"", fontsize=10, fontweight="bold")
        target_ax.imshow(highlight(sample["image"], sample["target"], (0, 220, 0)))
        target_ax.set_title("ground truth", fontsize=10)
        predicted_ax.imshow(highlight(sample["image"], sample["predicted"], (255, 120, 0)))
        predicted_ax.set_title(f"prediction (IoU {sample['iou']:.2f})", fontsize=10)
    fig.suptitle(f"DMN on toy val after the demo's training: two queries per image, prediction = probability > "
                 f"{threshold:.2f}", fontsize=12)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_iou_curves(before: dict, after: dict, baseline: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(THRESHOLDS, before["cumulative_iou"], marker=".", label=f"untrained (max {before['max_iou']:.3f})")
    ax.plot(THRESHOLDS, after["cumulative_iou"], marker=".", label=f"trained (max {after['max_iou']:.3f})")
    ax.axhline(baseline, color="gray", linestyle="--", label=f"query-blind: every shape ({baseline:.3f})")
    ax.set_xlabel("probability threshold")
    ax.set_ylabel("cumulative IoU (toy val)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def demo_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="toy data folder (python -m toydata.refer --out ...)")
    parser.add_argument("--out", required=True, type=Path, help="folder for demo_result.json and the figures")
    parser.add_argument("--size", type=int, default=192, help="image size (the multimodal map is size / 32 wide)")
    parser.add_argument("--low-res-epochs", type=int, default=5, help="low-res epochs (batch size 1)")
    parser.add_argument("--low-res-steps", type=int, default=970, help="at most this many steps per low-res epoch")
    parser.add_argument("--lr", type=float, default=2e-3, help="low-res learning rate")
    parser.add_argument("--high-res-steps", type=int, default=970, help="high-res training steps (one epoch)")
    parser.add_argument("--high-res-lr", type=float, default=5e-4, help="high-res learning rate")
    parser.add_argument("--seed", type=int, default=1111)
    return parser


def write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    args = demo_args_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start, start_cpu = time.time(), time.process_time()
    baseline = every_shape_baseline(args.data, "val")
    cpu_seconds, evaluations = {}, {}
    for stage in ("untrained", "low_res", "high_res"):
        stage_cpu = time.process_time()
        discard_training_state(stage_argv(args, stage))  # a rerun retrains
        evaluations[stage] = train_main(stage_argv(args, stage))["evaluations"]
        cpu_seconds[stage] = round(time.process_time() - stage_cpu, 1)
    before = evaluations["untrained"][0]
    after = evaluations["high_res"][-1]
    samples_figure, curve_figure = args.out / "val_queries.png", args.out / "iou_vs_threshold.png"
    high_res_argv = stage_argv(args, "high_res")
    weights = args.out / "weights" / "high_res" / "dmn_best_weights.pth"
    plot_samples(predict_samples(high_res_argv, weights, after["threshold"]), after["threshold"], samples_figure)
    plot_iou_curves(before, after, baseline, curve_figure)
    result = {"metric": "cumulative IoU (toy val)", "before": before["max_iou"], "after": after["max_iou"],
              "baseline": baseline, "baseline_name": "query-blind: every shape of the image",
              "lower_is_better": False, "seconds": round(time.time() - start, 1),
              "cpu_seconds": round(time.process_time() - start_cpu, 1), "cpu_seconds_per_stage": cpu_seconds,
              "figures": [str(samples_figure), str(curve_figure)], "config": {k: str(v) for k, v in vars(args).items()}}
    write_json(args.out / "demo_result.json", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
