"""`make spatial_captioning-demo`: toy data -> XE training -> SCST -> evaluation, with figures.

Writes OUT/demo_result.json ({"metric", "before", "after", "seconds", "figures", "baseline", "baseline_name",
"lower_is_better"} plus the intermediate scores and "cpu_seconds") and OUT/examples.png, OUT/training_curves.png.
The baseline is the best constant caption (constant_caption.py). Runs in about two minutes on one CPU thread.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

import eval as eval_script
import models
import opts
import train as train_script
from constant_caption import best_constant_caption, constant_caption_cider
from dataloader import DataLoader, split_indices
from eval_utils import eval_split, load_references
from misc.checkpoint import load_pickle
from misc.losses import LanguageModelCriterion
from toydata.scene import RELATIONS

log = logging.getLogger("demo")
METRIC = "CIDEr"


def toy_args(toy: Path, ckpt: Path, run_id: str, grid_dir: Path | None = None) -> list[str]:
    return ["--id", run_id, "--caption_model", "spatial_pe", "--input_json", str(toy / "cocotalk.json"),
            "--input_img_feat_dir", str(toy / "cocobu_att"), "--input_label_h5", str(toy / "cocotalk_label.h5"),
            "--input_grid_vec_dir", str(grid_dir or toy / "cocobu_box_vec"), "--checkpoint_path", str(ckpt),
            "--num_layers", "2", "--input_encoding_size", "128", "--ff_size", "256", "--num_grids", "144",
            "--dropout", "0.1", "--device", "cpu", "--batch_size", "16", "--val_images_use", "40",
            "--cached_tokens", str(toy / "coco-train-idxs.p"), "--tensorboard", "1", "--losses_log_every", "10"]


def evaluate(ckpt: Path, run_id: str, toy: Path, grid_dir: Path) -> tuple[float, list[dict]]:
    argv = ["--device", "cpu", "--model", str(ckpt / "model.pth"), "--infos_path", str(ckpt / f"infos_{run_id}.pkl"),
            "--input_json", str(toy / "cocotalk.json"), "--input_label_h5", str(toy / "cocotalk_label.h5"),
            "--input_img_feat_dir", str(toy / "cocobu_att"), "--input_grid_vec_dir", str(grid_dir),
            "--language_eval", "1", "--meteor", "0", "--ann_file", str(toy / "annotations" / "captions_val2014.json"),
            "--dump_images", "0", "--beam_size", "1", "--split", "test", "--id", run_id]
    _, preds, stats = eval_script.run(eval_script.get_parser().parse_args(argv))
    return stats[METRIC], preds


def untrained_score(toy: Path, out: Path) -> float:
    opt = opts.parse_opt(toy_args(toy, out / "untrained", "untrained"))
    torch.manual_seed(opt.seed)
    loader = DataLoader(opt, "test")
    opt.vocab_size, opt.seq_length = loader.vocab_size(), loader.seq_length()
    model = models.setup(opt)
    kwargs = {**vars(opt), "split": "test", "language_eval": 1, "meteor": 0,
              "ann_file": str(toy / "annotations" / "captions_val2014.json")}
    _, _, stats = eval_split(model, LanguageModelCriterion(), loader, kwargs, torch.device("cpu"))
    return stats[METRIC]


def zero_grid_copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.npy"):
        np.save(dst / f.name, np.zeros_like(np.load(f)))
    return dst


def plot_curves(hist_xe: dict, hist_rl: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    xe = sorted(hist_xe["loss_history"].items())
    a.plot([i for i, _ in xe], [v for _, v in xe])
    a.set(title="cross-entropy training", xlabel="iteration", ylabel="loss")
    rl = sorted((i, v) for i, v in hist_rl["loss_history"].items() if i > max(hist_xe["loss_history"]))
    b.plot([i for i, _ in rl], [v for _, v in rl], color="C1")
    b.axhline(0, color="grey", lw=0.5)
    b.set(title="self-critical training", xlabel="iteration", ylabel="reward (sample - greedy CIDEr-D)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def constant_caption_baseline(toy: Path, image_ids: list[int]) -> tuple[str, float]:
    """The best constant caption among the training split's references (restval included, as the demo trains on
    it) and its CIDEr on the evaluated test images, scored by the scorer that scores the model."""
    references = load_references(str(toy / "annotations" / "captions_val2014.json"))
    with open(toy / "cocotalk.json") as f:
        images = json.load(f)["images"]
    candidates = [c for ix in split_indices(images, train_only=False)["train"] for c in references[images[ix]["id"]]]
    test_references = {i: references[i] for i in dict.fromkeys(image_ids)}
    caption, searched = best_constant_caption(candidates, test_references)
    score = constant_caption_cider(caption, test_references)
    assert abs(score - searched) < 1e-9, (score, searched)
    log.info("best constant caption of %d candidates: %r, CIDEr %.4f", len(candidates), caption, score)
    return caption, score


def relation_of(caption: str) -> str | None:
    return next((r for r in RELATIONS if f" {r} " in f" {caption.lower().rstrip('.')} "), None)


def relation_accuracy(preds: list[dict], references: dict[int, list[str]]) -> float:
    """Fraction of images whose caption names the relation its references name (every toy reference names it)."""
    return float(np.mean([relation_of(p["caption"]) == relation_of(references[p["image_id"]][0]) for p in preds]))


def plot_examples(toy: Path, preds: list[dict], preds_zero: list[dict], scores: dict[str, float], baseline: str,
                  path: Path, rows: int = 2, cols: int = 4) -> None:
    """Test images with their boxes, the SCST caption, the caption with the grid vectors zeroed and two references."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    references = load_references(str(toy / "annotations" / "captions_val2014.json"))
    zero = {p["image_id"]: p["caption"] for p in preds_zero}
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 4.8 * rows))
    for ax, p in zip(axes.flat, preds):
        ax.imshow(Image.open(toy / "images" / p["file_path"]), interpolation="nearest")
        for x1, y1, x2, y2 in np.load(toy / "cocobu_box" / f"{p['image_id']}.npy"):
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="white", lw=0.8))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"test image {p['image_id']}", fontsize=9)
        lines = [("model (after SCST):", "black", "bold"), (p["caption"], "black", "bold"),
                 ("grid vectors zeroed:", "dimgray", "normal"), (zero[p["image_id"]], "dimgray", "normal"),
                 ("references:", "darkgreen", "normal")]
        lines += [(r, "darkgreen", "normal") for r in references[p["image_id"]][:2]]
        for i, (text, colour, weight) in enumerate(lines):
            ax.text(0.0, -0.04 - 0.075 * i, text, transform=ax.transAxes, va="top", fontsize=8.5, color=colour,
                    fontweight=weight)
    fig.suptitle(f"CIDEr on the {len(preds)} toy test images: model {scores['after']:.2f}, grid vectors zeroed "
                 f"{scores['zeroed']:.2f}, untrained {scores['before']:.2f}; best constant caption "
                 f"{scores['baseline']:.2f} ('{baseline}')\nrelation word right: model {scores['relation']:.0%}, "
                 f"grid vectors zeroed {scores['relation_zeroed']:.0%}", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.2, wspace=0.15, hspace=0.75)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", type=Path, required=True, help="toy data folder (toydata.cocotalk output)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--xe_iters", type=int, default=600)
    parser.add_argument("--scst_iters", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(1)
    start, cpu_start = time.time(), time.process_time()
    toy, out = args.toy.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # eval.py writes vis/ and eval_results/ here
    before = untrained_score(toy, out)
    xe_dir, rl_dir = out / "checkpoints" / "xe", out / "checkpoints" / "scst"
    train_script.train(opts.parse_opt(toy_args(toy, xe_dir, "xe") + [
        "--noamopt", "--noamopt_warmup", "100", "--noamopt_factor", "0.3", "--max_iters", str(args.xe_iters),
        "--max_epochs", "1000", "--save_checkpoint_every", "100000", "--perform_validation_every", "100000"]))
    after_xe, _ = evaluate(xe_dir, "xe", toy, toy / "cocobu_box_vec")
    infos = load_pickle(xe_dir / "infos_xe.pkl")
    rl_args = toy_args(toy, rl_dir, "xe") + [
        "--start_from", str(xe_dir), "--self_critical_after", str(infos["epoch"]), "--learning_rate", "5e-4",
        "--max_iters", str(args.xe_iters + args.scst_iters), "--max_epochs", "1000",
        "--save_checkpoint_every", "100000", "--perform_validation_every", "100000",
        "--batch_size", "9", "--losses_log_every", "2"]  # the README's SCST batch size
    train_script.train(opts.parse_opt(rl_args))
    after, preds = evaluate(rl_dir, "xe", toy, toy / "cocobu_box_vec")
    zero, preds_zero = evaluate(rl_dir, "xe", toy, zero_grid_copy(toy / "cocobu_box_vec", out / "box_vec_zero"))
    baseline_caption, baseline = constant_caption_baseline(toy, [p["image_id"] for p in preds])
    references = load_references(str(toy / "annotations" / "captions_val2014.json"))
    scores = {"before": before, "after": after, "zeroed": zero, "baseline": baseline,
              "relation": relation_accuracy(preds, references),
              "relation_zeroed": relation_accuracy(preds_zero, references)}
    figures = [str(out / "examples.png"), str(out / "training_curves.png")]
    plot_examples(toy, preds, preds_zero, scores, baseline_caption, Path(figures[0]))
    plot_curves(load_pickle(xe_dir / "histories_xe.pkl"), load_pickle(rl_dir / "histories_xe.pkl"), Path(figures[1]))
    result = {"metric": f"{METRIC} (toy test)", "before": before, "after": after, "seconds": time.time() - start,
              "cpu_seconds": time.process_time() - cpu_start, "figures": figures, "baseline": baseline,
              "baseline_name": f"best constant caption: '{baseline_caption}'", "lower_is_better": False,
              "after_xe": after_xe, "after_scst": after, "after_scst_box_vec_zeroed": zero,
              "relation_accuracy": scores["relation"], "relation_accuracy_box_vec_zeroed": scores["relation_zeroed"]}
    with open(out / "demo_result.json.tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(out / "demo_result.json.tmp", out / "demo_result.json")
    log.info("%s", json.dumps(result))


if __name__ == "__main__":
    main()
