"""Toy demo: evaluate the untrained model, train briefly, evaluate again; write demo_result.json and figures.

``python -m dmn_pytorch.demo --data data/toy/dmn --out runs/demo/dmn`` (``make dmn-demo``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shared_eval.masks import THRESHOLDS  # noqa: E402

from .train import main as train_main  # noqa: E402

# The Makefile's toy model (narrow widths, dpn_toy trunk, high-res head), trained for a fixed number of steps.
TOY_FLAGS = ["--dataset", "unc", "--val", "val", "--backend", "dpn_toy", "--vis-size", "560", "--num-filters", "10",
             "--lang-layers", "3", "--mix-we", "--size", "64", "--emb-size", "64", "--hid-size", "64",
             "--mixed-size", "64", "--hid-mixed-size", "64", "--high-res", "--upsamp-width", "32",
             "--no-pretrained", "--workers", "0", "--lr", "2e-3", "--accum-iters", "1", "--log-interval", "200"]


def plot_iou_curve(evaluation: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(THRESHOLDS, evaluation["cumulative_iou"], marker=".")
    ax.set_xlabel("threshold")
    ax.set_ylabel("cumulative IoU (toy val)")
    ax.set_title(f"after training: max {evaluation['max_iou']:.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="toy data folder (python -m toydata.refer --out ...)")
    parser.add_argument("--out", required=True, help="folder for demo_result.json and the figures")
    parser.add_argument("--steps", type=int, default=500, help="training steps (batch size 1)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    results = train_main(TOY_FLAGS + [
        "--data", args.data, "--split-root", str(Path(args.data) / "splits"), "--save-folder", str(out / "weights"),
        "--snapshot", str(out / "weights" / "none.pth"), "--optim-snapshot", str(out / "weights" / "none.pth"),
        "--eval-first", "--epochs", "1", "--max-batches-per-epoch", str(args.steps),
        "--save-vis", str(out / "vis"), "--backup-iters", str(10**9),
    ])
    before, after = results["evaluations"][0], results["evaluations"][-1]
    curve = out / "iou_vs_threshold.png"
    plot_iou_curve(after, curve)
    samples = sorted((out / "vis" / "epoch001").glob("*.png"))[:4]
    result = {"metric": "cumulative IoU (toy val)", "before": before["max_iou"], "after": after["max_iou"],
              "seconds": round(time.time() - start, 1), "figures": [str(curve)] + [str(p) for p in samples]}
    tmp = out / "demo_result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out / "demo_result.json")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
