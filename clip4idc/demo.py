"""Toy demo: stage 1 (pair<->caption retrieval) briefly, then stage 2 (captioning) from its checkpoint.

Data: unless --toy is given, a toy CLEVR-Change set written into <out>/toy with one object per "before" scene (the
default toy set has one or two; the change kinds are the same and balanced), and the same pairs in the
Spot-the-Diff layout.
Headline: change-kind keyword accuracy of the greedy captions of the test split's changed pairs (a caption is right
when it holds its change kind's keyword: added / removed / moved / changed, and no other), before and after stage 2,
against the trivial baseline, the best constant caption on the same pairs (a change sentence: a quarter), and
always "there is no change" (0). Also recorded: the distractor pairs captioned as unchanged,
CIDEr of the changed pairs, the token cross-entropy, the CPU seconds of each stage, and one composite figure
(before | after | generated and reference captions) of changed and distractor pairs.

Then the same two stages with --datatype spot on the Spot-the-Diff layout ("spot" in demo_result.json): stage 1 of
its own, since the compact vocabulary is built from the dataset's captions and Spot's (no no-change sentences) gives a
token table of another size than CLEVR's, so a CLEVR checkpoint does not load; BLEU-4 and CIDEr of the test captions
before and after stage 2, against the best constant caption for each; the last stage-2 checkpoint stays in
<out>/spot_caption (what `make tables TOY=1` evaluates)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import textwrap
import time
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import main_task_caption  # noqa: E402
import main_task_retrieval  # noqa: E402
from caption_eval import load_gt, score_captions, score_parts  # noqa: E402
from toydata.idc import (IMAGE_SIZE, KEYWORDS, NO_CHANGE_WORD, OBJECT_SIZE, TYPE_NAMES, Pair,  # noqa: E402
                         change_captions, coco_gt, lighting_gain, split_sizes, write_clevr, write_json, write_spot,
                         write_spot_gt)
from toydata.scene import CHANGE_KINDS, apply_change, sample_scene  # noqa: E402
from util import save_atomic  # noqa: E402

logger = logging.getLogger("clip4idc.demo")

SMALL = ["--clip_random_init", "--compact_vocab", "--clip_embed_dim", "64", "--clip_vision_width", "64",
         "--clip_vision_layers", "4", "--intra_num_hidden_layers", "2",
         "--clip_text_width", "64", "--clip_text_layers", "2",
         "--decoder_model", "decoder-tiny", "--cache_images", "--num_thread_reader", "0", "--max_words", "16",
         "--freeze_layer_num", "-1", "--n_display", "1000", "--batch_size_val", "64"]
NO_CHANGE_CAPTION = "there is no change"
SPOT_GT = "spot_total_change_captions_reformat.json"
SPOT_METRICS = ("Bleu_4", "CIDEr")
FIGURE_CHANGED, FIGURE_DISTRACTORS = 6, 2
KIND_OF_KEYWORD = {keyword: kind for kind, keyword in KEYWORDS.items()}


def one_object_pair(rng: np.random.Generator, kind: str) -> Pair:
    """toydata.idc's pair with a single object in the "before" scene (the default toy set draws one or two)."""
    while True:
        before = sample_scene(rng, IMAGE_SIZE, IMAGE_SIZE, n_objects=(1, 1), size=OBJECT_SIZE)
        try:
            after, change = apply_change(before, rng, kind)
        except ValueError:
            continue
        return Pair(before, after, lighting_gain(rng), kind, change_captions(change))


def write_one_object_toy(root: Path, seed: int, size: int) -> None:
    """The toy CLEVR-Change and Spot-the-Diff layouts of the same pairs and their gt/ files (as ``python -m
    toydata.idc``) with one object per scene, kinds balanced in every split: the comparison the model must learn is
    the same, with no second object in the way. The CLEVR files do not depend on the Spot ones (written after)."""
    rng = np.random.default_rng(seed)
    pairs = {split: [one_object_pair(rng, CHANGE_KINDS[i % len(CHANGE_KINDS)]) for i in range(n)]
             for split, n in split_sizes(size).items()}
    change, no_change = write_clevr(root / "clevr_change" / "data", pairs)
    entries = [(k.split("_")[-1], v) for k, v in change.items()] + [(k.split("_")[-1] + "_n", v)
                                                                    for k, v in no_change.items()]
    (root / "gt").mkdir(parents=True, exist_ok=True)
    write_json(coco_gt(entries), root / "gt" / "clevr_total_change_captions_reformat.json")
    write_spot_gt(root / "gt", write_spot(root / "spot-the-diff", pairs, rng))


def change_keywords(data: str) -> dict[str, str]:
    """{"NNNNNN.png": keyword of its change kind} from the toy set's type_mapping.json."""
    types = json.loads(Path(data, "type_mapping.json").read_text())
    keyword_of_type = {TYPE_NAMES[kind]: KEYWORDS[kind] for kind in KEYWORDS}
    return {name: keyword_of_type[t] for t, names in types.items() if t in keyword_of_type for name in names}


def caption_kind(caption: str) -> str | None:
    """The one change keyword (or "no") a caption names; None when it names none or several (e.g. word salad)."""
    named = set(caption.split()) & {*KEYWORDS.values(), NO_CHANGE_WORD}
    return named.pop() if len(named) == 1 else None


def kind_accuracy(hyps: list[dict], keywords: dict[str, str]) -> float:
    """Share of changed pairs whose caption names their change kind and no other (nor "no")."""
    changed = [h for h in hyps if not h["image_id"].endswith("_n")]
    return sum(caption_kind(h["caption"]) == keywords[h["image_id"]] for h in changed) / len(changed)


def distractor_accuracy(hyps: list[dict]) -> float:
    """Share of distractor (lighting-only) pairs whose caption says no change and names no change kind."""
    distractors = [h for h in hyps if h["image_id"].endswith("_n")]
    return sum(caption_kind(h["caption"]) == NO_CHANGE_WORD for h in distractors) / len(distractors)


def constant_captions(hyps: list[dict], caption: str) -> list[dict]:
    return [{"image_id": h["image_id"], "caption": caption} for h in hyps]


def best_constant_caption(hyps: list[dict], keywords: dict[str, str], gts: dict[str, list[str]]) -> tuple[str, float]:
    """The reference sentence that, given to every pair, scores the highest change-kind accuracy (first on ties): a
    change sentence of the most frequent kind (with balanced kinds, 1/4)."""
    candidates = sorted({c for captions in gts.values() for c in captions})
    scored = [(kind_accuracy(constant_captions(hyps, c), keywords), c) for c in candidates]
    best = max(score for score, _ in scored)
    return next(c for score, c in scored if score == best), best


def caption_scores(hyps: list[dict], keywords: dict[str, str], gts: dict[str, list[str]]) -> dict[str, float]:
    parts = score_parts(gts, hyps, meteor=False)
    return {"kind_accuracy": kind_accuracy(hyps, keywords), "distractor_accuracy": distractor_accuracy(hyps),
            "cider_changed": parts["sc"]["CIDEr"], "cider_total": parts["total"]["CIDEr"]}


def best_constant_scores(hyps: list[dict], gts: dict[str, list[str]]) -> dict[str, dict]:
    """For BLEU-4 and for CIDEr, the reference sentence of the scored pairs that, given to every pair, scores highest
    (first in sorted order on ties), and its score."""
    candidates = sorted({c for h in hyps for c in gts[h["image_id"]]})
    scored = [(score_captions(gts, constant_captions(hyps, c), meteor=False), c) for c in candidates]
    best = {}
    for metric in SPOT_METRICS:
        top = max(scores[metric] for scores, _ in scored)
        best[metric] = {"score": top, "caption": next(c for scores, c in scored if scores[metric] == top)}
    return best


def spot_scores(summary: dict) -> dict[str, float]:
    return {metric: summary["test"]["total"][metric] for metric in SPOT_METRICS}


def train_retrieval(args: argparse.Namespace, common: list[str], output_dir: str,
                    epochs: int) -> tuple[dict, list[str]]:
    """Stage 1 for ``epochs``; its result and the flags that start stage 2 from its last checkpoint."""
    stage1 = main_task_retrieval.main(["--do_train", "--epochs", str(epochs), "--coef_lr", "1",
                                       "--batch_size", str(args.batch_size), "--output_dir", output_dir] + common)
    init = ["--init_model", os.path.join(output_dir, f"pytorch_model.bin.{epochs - 1}"),
            "--gt_dir", os.path.join(args.toy, "gt"), "--no_meteor"]
    return stage1, init


def run_spot(args: argparse.Namespace, model: list[str]) -> dict:
    """Both stages with --datatype spot on <toy>/spot-the-diff; the "spot" block of demo_result.json."""
    cpu_start = time.process_time()
    spot = os.path.join(args.toy, "spot-the-diff")
    common = ["--datatype", "spot", "--data_path", spot, "--features_path", os.path.join(spot, "images")] + model
    stage1, init = train_retrieval(args, common, os.path.join(args.out, "spot_retrieval"), args.spot_retrieval_epochs)
    stage1_cpu = time.process_time() - cpu_start
    before = main_task_caption.main(["--do_eval", "--output_dir", os.path.join(args.out, "spot_caption_before")]
                                    + init + common)
    train_dir = os.path.join(args.out, "spot_caption")
    trained = main_task_caption.main(["--do_train", "--epochs", str(args.spot_caption_epochs), "--output_dir",
                                      train_dir, "--coef_lr", str(args.caption_coef_lr), "--batch_size",
                                      str(args.caption_batch_size)] + init + common)
    # The last epoch, as make tables TOY=1 evaluates it (tools/paper_rows.toml: pytorch_model.bin.{last}).
    last = os.path.join(train_dir, f"pytorch_model.bin.{args.spot_caption_epochs - 1}")
    final_dir = os.path.join(args.out, "spot_caption_last")
    after = main_task_caption.main(["--do_eval", "--output_dir", final_dir, "--init_model", last] + init[2:] + common)
    hyps = json.loads(Path(final_dir, "hyp_ep_eval.json").read_text())
    baseline = best_constant_scores(hyps, load_gt(os.path.join(args.toy, "gt", SPOT_GT)))
    return {
        "metric": f"BLEU-4 and CIDEr (total) of the greedy captions of the {len(hyps)} Spot-the-Diff-layout test pairs",
        "before": spot_scores(before),
        "after": spot_scores(after),
        "baseline": baseline,
        "baseline_name": "best constant caption for each metric (every test reference sentence tried)",
        "checkpoint": last,
        "train_pairs": len(json.loads(Path(spot, "reformat_train.json").read_text())),
        "retrieval_epochs": args.spot_retrieval_epochs,
        "caption_epochs": args.spot_caption_epochs,
        "train_loss": [epoch["train_loss"] for epoch in trained["epochs"]],
        "token_ce": {"before": before["token_ce"], "after": after["token_ce"]},
        "stage1_text_to_pair": stage1["test"]["text_to_pair"],
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "stage1_cpu_seconds": round(stage1_cpu, 1),
    }


def spot_table_rows(spot: dict) -> list[dict]:
    """The Spot stage's metrics as rows of the make demo table (tools/demo_table.py's `more_rows`)."""
    return [{"label": f"Spot-the-Diff {metric}", "metric": f"{metric} (toy Spot test, total)",
             "before": spot["before"][metric], "after": spot["after"][metric],
             "baseline": spot["baseline"][metric]["score"],
             "baseline_name": f'best constant caption, "{spot["baseline"][metric]["caption"]}"',
             "lower_is_better": False, "cpu_seconds": spot["cpu_seconds"]} for metric in SPOT_METRICS]


def pair_images(data: str, image_id: str) -> tuple[Image.Image, Image.Image]:
    number = image_id.removesuffix("_n")
    after = ("nsc_images", "nonsemantic") if image_id.endswith("_n") else ("sc_images", "semantic")
    return (Image.open(Path(data, "images", f"CLEVR_default_{number}")).convert("RGB"),
            Image.open(Path(data, after[0], f"CLEVR_{after[1]}_{number}")).convert("RGB"))


def figure_pairs(hyps: list[dict], keywords: dict[str, str]) -> list[dict]:
    """The first changed pairs of every change kind in turn, then the first distractor pairs."""
    changed = [h for h in hyps if not h["image_id"].endswith("_n")]
    by_kind: dict[str, list[dict]] = {}
    for h in changed:
        by_kind.setdefault(keywords[h["image_id"]], []).append(h)
    picked = [h for row in zip(*by_kind.values()) for h in row][:FIGURE_CHANGED]
    return picked + [h for h in hyps if h["image_id"].endswith("_n")][:FIGURE_DISTRACTORS]


def save_composite(data: str, hyps: list[dict], before_hyps: list[dict], gts: dict[str, list[str]],
                   keywords: dict[str, str], path: str) -> str:
    """One row per pair: before and after images (nearest-neighbour enlarged), then the captions; 1,200 px wide."""
    pairs = figure_pairs(hyps, keywords)
    untrained = {h["image_id"]: h["caption"] for h in before_hyps}
    fig, axes = plt.subplots(len(pairs), 3, figsize=(12, 2.1 * len(pairs)), gridspec_kw={"width_ratios": [1, 1, 3.6]})
    for row, hyp in zip(axes, pairs):
        image_id = hyp["image_id"]
        distractor = image_id.endswith("_n")
        for ax, image, title in zip(row[:2], pair_images(data, image_id), ("before", "after")):
            ax.imshow(image, interpolation="nearest")
            ax.set_title(f"{image_id.removesuffix('_n')} {title}", fontsize=9)
            ax.axis("off")
        kind = "distractor (lighting only)" if distractor else f"changed: {KIND_OF_KEYWORD[keywords[image_id]]}"
        right = caption_kind(hyp["caption"]) == (NO_CHANGE_WORD if distractor else keywords[image_id])
        text = [f"pair {kind}", f"after stage 2: {hyp['caption']}  [{'right' if right else 'wrong'}]",
                textwrap.shorten(f"before stage 2: {untrained.get(image_id, '')}", 80)]
        text += textwrap.wrap("references: " + "; ".join(gts[image_id][:3]), 80)
        row[2].text(0.0, 0.5, "\n".join(text), fontsize=10, va="center", family="monospace")
        row[2].axis("off")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", default=None,
                        help="toy root written by python -m toydata.idc (both layouts); default: write the one-object "
                             "toy set (1,024 training pairs, seed 0, both layouts) into <out>/toy")
    parser.add_argument("--out", required=True)
    parser.add_argument("--retrieval_epochs", type=int, default=10)
    parser.add_argument("--caption_epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=2e-3, help="both stages")
    parser.add_argument("--caption_coef_lr", type=float, default=0.1,
                        help="stage 2's --coef_lr, CLEVR and Spot (stage 1: 1)")
    parser.add_argument("--batch_size", type=int, default=32, help="stage 1, CLEVR and Spot")
    parser.add_argument("--caption_batch_size", type=int, default=32, help="stage 2, CLEVR and Spot")
    parser.add_argument("--no_change_weight", type=float, default=1.0, help="stage 2's --no_change_weight")
    parser.add_argument("--image_resolution", type=int, default=64)
    parser.add_argument("--patch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42, help="both stages")
    parser.add_argument("--spot_retrieval_epochs", type=int, default=6, help="Spot-the-Diff stage 1")
    parser.add_argument("--spot_caption_epochs", type=int, default=5, help="Spot-the-Diff stage 2")
    args = parser.parse_args(argv)
    start, cpu_start = time.time(), time.process_time()
    if args.toy is None:
        args.toy = os.path.join(args.out, "toy")
        write_one_object_toy(Path(args.toy), seed=0, size=1024)
    data = os.path.join(args.toy, "clevr_change", "data")
    # --overwrite: a rerun of the demo replaces the demo's own earlier checkpoints.
    model = ["--overwrite", "--lr", str(args.lr), "--seed", str(args.seed), "--image_resolution",
             str(args.image_resolution), "--clip_patch_size", str(args.patch_size)] + SMALL
    common = ["--datatype", "clevr", "--data_path", data, "--features_path", data] + model
    stage1, init = train_retrieval(args, common, os.path.join(args.out, "retrieval"), args.retrieval_epochs)
    stage1_cpu = time.process_time() - cpu_start
    before_dir, after_dir = os.path.join(args.out, "caption_before"), os.path.join(args.out, "caption")
    before = main_task_caption.main(["--do_eval", "--output_dir", before_dir] + init + common)
    # A stage-2 --coef_lr below 1 moves the adapted visual tower slower than the decoder (the original: 1e-3).
    stage2 = ["--do_train", "--epochs", str(args.caption_epochs), "--output_dir", after_dir,
              "--coef_lr", str(args.caption_coef_lr), "--batch_size", str(args.caption_batch_size),
              "--no_change_weight", str(args.no_change_weight)]
    main_task_caption.main(stage2 + init + common)
    # The last epoch, not the one main_task_caption selects: on this toy set the selection criterion (total CIDEr on
    # val) prefers the collapsed "there is no change" decoder, which earns the distractor half of the score.
    last = ["--init_model", os.path.join(after_dir, f"pytorch_model.bin.{args.caption_epochs - 1}")] + init[2:]
    final_dir = os.path.join(args.out, "caption_last")
    after = main_task_caption.main(["--do_eval", "--output_dir", final_dir] + last + common)

    keywords = change_keywords(data)
    gts = load_gt(os.path.join(args.toy, "gt", "clevr_total_change_captions_reformat.json"))
    before_hyps = json.loads(Path(before_dir, "hyp_ep_eval.json").read_text())
    after_hyps = json.loads(Path(final_dir, "hyp_ep_eval.json").read_text())
    constant, _ = best_constant_caption(after_hyps, keywords, gts)
    scores = {"before": caption_scores(before_hyps, keywords, gts), "after": caption_scores(after_hyps, keywords, gts),
              "baseline": caption_scores(constant_captions(after_hyps, constant), keywords, gts),
              "no_change_baseline": caption_scores(constant_captions(after_hyps, NO_CHANGE_CAPTION), keywords, gts)}
    kinds = Counter(keywords[h["image_id"]] for h in after_hyps if not h["image_id"].endswith("_n"))
    os.makedirs(args.out, exist_ok=True)
    figure = save_composite(data, after_hyps, before_hyps, gts, keywords, os.path.join(args.out, "captions.png"))
    spot = run_spot(args, model)
    result = {
        "metric": f"change-kind keyword accuracy, {sum(kinds.values())} changed test pairs",
        "before": scores["before"]["kind_accuracy"],
        "after": scores["after"]["kind_accuracy"],
        "baseline": scores["baseline"]["kind_accuracy"],
        "baseline_name": f'best constant caption, "{constant}"',
        "lower_is_better": False,
        "no_change_baseline": scores["no_change_baseline"]["kind_accuracy"],
        "no_change_baseline_name": f'always "{NO_CHANGE_CAPTION}"',
        "seconds": round(time.time() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "stage1_cpu_seconds": round(stage1_cpu, 1),
        "figures": [figure],
        "scores": scores,
        "token_ce": {"before": before["token_ce"], "after": after["token_ce"]},
        "stage1_text_to_pair": stage1["test"]["text_to_pair"],
        "spot": spot,
        "more_rows": spot_table_rows(spot),
        "config": vars(args),
    }
    save_atomic(result, os.path.join(args.out, "demo_result.json"))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
