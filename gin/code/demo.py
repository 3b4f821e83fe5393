"""Toy demo: untrained accuracy -> brief GIN training at narrow width -> accuracy, against trivial baselines, with figures;
then the same for the paper's baseline, ZSGNet (configs/zsgnet.yaml), at the same widths and learning rate.

    python code/demo.py --out DIR [--toy data/toy/gin] [--toy_seed 0] [--epochs 5] [--zsgnet_epochs 3] [--lr 3e-3]
                        [--blank]

Writes DIR/demo_result.json ({"metric", "before", "after", "baseline", "baseline_name", "lower_is_better",
"baselines", "seconds", "cpu_seconds", "figures", "zsgnet", ...}: the headline figures are GIN's, "zsgnet" holds the
baseline model's before/after), DIR/predictions.png (toy test images, each with its two queries: ground truth in
green, GIN's box in red, query and IoU under each) and DIR/val_curve.png (both models). Each model's best-val-Acc
checkpoint is main_dist's own, DIR/tmp/models/demo.pth (GIN) and demo_zsgnet.pth (ZSGNet): ``make tables TOY=1``
evaluates them through the paper rows' commands. The baselines are exact expectations on the same split: a random
object of the image and its largest object (``baseline`` is the stronger). ``--blank`` trains with every expression
replaced by the same word (the model can then only guess one of the four objects).
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import pickle
import time
from pathlib import Path

import pandas as pd
import torch
from shared_eval.boxes import paired_box_iou

from baselines import toy_baselines
from config import DEFAULT_CFG, GIN_DIR, load_config, merge_overrides, validate, validate_extras
from errors import GinError, exit_with
from eval_script import evaluate as eval_accuracy
from main_dist import Run
from util.checkpoint import atomic_write_bytes, load_checkpoint

LOG = logging.getLogger("gin.demo")

TOY_OVERRIDES = {
    "ds_to_use": "toy", "word_vectors": "hash", "resize_img": "[128,128]", "backbone_width": "8",
    "backbone_layers": "[1,1,1,1]", "afs_hidden": "32", "afs_out": "32", "fpn_dim": "32", "head_dim": "32",
    "lstm_dim": "32", "lr": "2e-3", "sched_mode": "max", "nw": "0", "seed": "0", "epochs": "100", "resume": "False",
    "max_train_batches": "110",  # shorter epochs, so whole epochs fit the demo's time budget
    "resume_last": "False",  # every demo trains from scratch, even where a killed demo left its state
}
# About 30 CPU s an epoch; lr 3e-3 beat 2e-3 at 5 epochs (README's demo section has the measured alternatives).
DEMO_EPOCHS, DEMO_LR = 5, 3e-3
# ZSGNet: about 20 CPU s an epoch of the same 110 batches; 3 epochs keep its stage near a minute of CPU.
ZSGNET_CFG, ZSGNET_EPOCHS = GIN_DIR / "configs" / "zsgnet.yaml", 3


def blank_expressions(toy: Path, out: Path) -> Path:
    """A copy of the toy CSVs with every query replaced by one word (images are shared)."""
    (out / "csv_dir").mkdir(parents=True, exist_ok=True)
    for name in ("train_flat", "val", "test"):
        df = pd.read_csv(toy / "csv_dir" / f"{name}.csv")
        df.assign(query="object").to_csv(out / "csv_dir" / f"{name}.csv", index=False)
    return out


def toy_overrides(toy: Path, tmp: Path, extra: dict[str, str] | None = None, img_dir: Path | None = None) -> dict[str, str]:
    return {**TOY_OVERRIDES, "ds_info.toy.trn_csv_file": str(toy / "csv_dir" / "train_flat.csv"),
            "ds_info.toy.val_csv_file": str(toy / "csv_dir" / "val.csv"),
            "ds_info.toy.test_csv_file": str(toy / "csv_dir" / "test.csv"),
            "ds_info.toy.img_dir": str(img_dir or toy / "saiapr_tc12_images"), "tmp_path": str(tmp), **(extra or {})}


def test_accuracy(run: Run, toy_csv: Path) -> float:
    """eval_script's strict IoU > 0.5 accuracy of the current model on the toy test split."""
    run.testing(run.test_dl, "test0")
    acc, _, _ = eval_accuracy(run.paths.predictions_dir / "test0_preds.pkl", toy_csv / "test.csv")
    return acc


def train_briefly(toy: Path, tmp: Path, seconds: float | None = None, blank: bool = False,
                  extra: dict[str, str] | None = None, cpu_seconds: float | None = None,
                  cfg_file: Path = DEFAULT_CFG, uid: str = "demo") -> dict:
    """Before/after toy-test accuracy of a run of ``cfg_file``'s model (GIN; ZSGNet with configs/zsgnet.yaml) trained
    for ``epochs`` (from ``extra``; else until a budget), or fewer when ``seconds`` wall or ``cpu_seconds`` CPU time
    run out (whole epochs: it stops after the epoch that passes the budget). main_dist's Run saves the best-val-Acc
    epoch as tmp/models/<uid>.pth (or ``<uid>_blank``), the checkpoint that ``make tables TOY=1`` evaluates."""
    data = blank_expressions(toy, tmp / "blank") if blank else toy
    cfg = merge_overrides(load_config(cfg_file), toy_overrides(data, tmp, extra, toy / "saiapr_tc12_images"))
    validate(cfg)
    validate_extras(cfg)
    torch.manual_seed(cfg["seed"])
    run = Run(f"{uid}_blank" if blank else uid, cfg)
    before = test_accuracy(run, data / "csv_dir")
    start, cpu_start = time.monotonic(), time.process_time()
    run.fit(deadline=None if seconds is None else start + seconds, cpu_budget=cpu_seconds)
    train_seconds, cpu_seconds = time.monotonic() - start, time.process_time() - cpu_start
    if run.paths.model_file.is_file():  # the best-val-Acc epoch
        load_checkpoint(run.paths.model_file, run.model)
    else:  # val Acc stayed 0, so Run saved no epoch: the last one is the model evaluated below and kept
        LOG.warning("val Acc stayed 0 in every epoch: saving the last epoch's model as %s", run.paths.model_file)
        run.save(*run.make_optimizer())
    after = test_accuracy(run, data / "csv_dir")
    return {"run": run, "before": before, "after": after, "train_seconds": train_seconds, "cpu_seconds": cpu_seconds}


def draw_groundings(run: Run, toy: Path, path: Path, images: int = 4) -> None:
    """One composite PNG (1280 px wide): ``images`` toy test images, each with its two queries (one per column), the
    ground-truth box in green, GIN's box in red and, under each, the query and the IoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from PIL import Image

    with (run.paths.predictions_dir / "test0_preds.pkl").open("rb") as f:
        preds = {p["id"]: p["pred_boxes"] for p in pickle.load(f)}
    df = pd.read_csv(toy / "csv_dir" / "test.csv")
    # Rows 4k and 4k + 2 name the two different objects of image k (each object has two phrasings, one per row).
    fig, axes = plt.subplots(2, images, figsize=(16, 8))
    for column in range(images):
        for line, ax in enumerate(axes[:, column]):
            row = 4 * column + 2 * line
            gt, pred = ast.literal_eval(df["bbox"][row]), preds[row]
            iou = paired_box_iou([pred], [gt]).item()
            ax.imshow(Image.open(toy / "saiapr_tc12_images" / df["img_id"][row]))
            for (x1, y1, x2, y2), colour in ((gt, "lime"), (pred, "red")):
                ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=colour, lw=2.5))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f'"{df["query"][row]}"\nIoU {iou:.2f}: {"correct" if iou > 0.5 else "wrong"}', fontsize=14)
    fig.legend(handles=[Patch(edgecolor="lime", fill=False, lw=2.5, label="ground truth"),
                        Patch(edgecolor="red", fill=False, lw=2.5, label="GIN's box")],
               loc="upper right", fontsize=13, ncol=2)
    fig.suptitle("GIN on toy test images: each image's two objects, found from the query text", fontsize=16, x=0.4)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def draw_curve(results: dict[str, dict], baselines: dict[str, float], path: Path) -> None:
    """Val acc@0.5 per epoch of each model (``results``: name -> train_briefly's result), epoch 0 its untrained test
    accuracy, against the val baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, result in results.items():
        history = result["run"].history
        ax.plot([0] + [h["epoch"] for h in history], [result["before"]] + [h["val_Acc"] for h in history], marker="o",
                label=name)
    for (name, value), style in zip(baselines.items(), ("--", ":")):
        ax.axhline(value, ls=style, color="grey", label=f"{name} ({value:.3f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("toy val acc@0.5")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="GIN toy demo")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--toy", type=Path, default=Path(__file__).resolve().parents[2] / "data" / "toy" / "gin")
    parser.add_argument("--toy_seed", type=int, default=0,
                        help="the seed the toy set was written with (its scenes give every object's box for the baselines)")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS,
                        help="training epochs (a fixed count, so any machine gives the same result, only sooner or later)")
    parser.add_argument("--zsgnet_epochs", type=int, default=ZSGNET_EPOCHS,
                        help="training epochs of the ZSGNet baseline's run, after GIN's (same widths, data and lr)")
    parser.add_argument("--lr", type=float, default=DEMO_LR, help="Adam learning rate of the demo's runs")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="optional cap on GIN's training wall time: no new epoch starts after it (0: none)")
    parser.add_argument("--cpu_seconds", type=float, default=0.0,
                        help="optional cap on GIN's training CPU time: no new epoch starts after it (0: none)")
    parser.add_argument("--blank", action="store_true", help="train and test with the expressions blanked")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.monotonic(), time.process_time()
    try:
        baselines = {split: toy_baselines(args.toy, split, args.toy_seed) for split in ("val", "test")}
    except GinError as exc:
        exit_with(exc)
    result = train_briefly(args.toy, args.out / "tmp", args.seconds or None, blank=args.blank,
                           extra={"epochs": str(args.epochs), "lr": str(args.lr)}, cpu_seconds=args.cpu_seconds or None)
    zsgnet_cpu_start = time.process_time()
    zsgnet = train_briefly(args.toy, args.out / "tmp", blank=args.blank, cfg_file=ZSGNET_CFG, uid="demo_zsgnet",
                           extra={"epochs": str(args.zsgnet_epochs), "lr": str(args.lr)})
    zsgnet_cpu_seconds = time.process_time() - zsgnet_cpu_start
    figures = [args.out / "predictions.png", args.out / "val_curve.png"]
    draw_groundings(result["run"], args.toy, figures[0])
    draw_curve({"GIN": result, "ZSGNet": zsgnet}, baselines["val"], figures[1])
    name, value = max(baselines["test"].items(), key=lambda item: item[1])
    summary = {"metric": "acc@0.5 (toy test)" + (" blanked expressions" if args.blank else ""),
               "before": result["before"], "after": result["after"], "baseline": value, "baseline_name": name,
               "lower_is_better": False, "baselines": baselines["test"], "seconds": time.monotonic() - start,
               "cpu_seconds": time.process_time() - cpu_start, "train_cpu_seconds": result["cpu_seconds"],
               "epochs": len(result["run"].history), "figures": [str(f) for f in figures],
               "zsgnet": {"before": zsgnet["before"], "after": zsgnet["after"], "epochs": len(zsgnet["run"].history),
                          "cpu_seconds": zsgnet_cpu_seconds, "train_cpu_seconds": zsgnet["cpu_seconds"],
                          "checkpoint": str(zsgnet["run"].paths.model_file),
                          "val_acc": [h["val_Acc"] for h in zsgnet["run"].history]}}
    summary["more_rows"] = [{"label": "ZSGNet (the paper's baseline model)", "metric": summary["metric"],
                             "before": zsgnet["before"], "after": zsgnet["after"], "baseline": value,
                             "baseline_name": name, "lower_is_better": False, "cpu_seconds": zsgnet_cpu_seconds}]
    atomic_write_bytes(args.out / "demo_result.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
