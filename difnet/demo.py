"""Toy demo: CIDEr of the untrained model on the toy test split, brief cross-entropy training, CIDEr after,
against the trivial baseline (the best constant caption), then the LRP figures. Writes <out>/demo_result.json
as the top-level `make demo` expects.

    python demo.py --toy DIR --out OUT
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch.utils.data import DataLoader

import engine
from baseline import best_constant_caption
import lrp_total
import show_lrp
import test as test_script
import train
from builders import model_config, visual_inputs, vocab_for_training
from data.coco import ImageDataset, collate_images, load_splits
from data.text import CaptionTokenizer
from errors import run_entry_point
from models import CaptioningModel
from shared_eval.captions import PTBTokenizer

# small width and a short schedule: three cross-entropy epochs (SCST epochs cost several XE epochs each)
TOY_MODEL = ["--mode", "difnet_lrp", "--d_model", "64", "--d_ff", "256", "--head", "4"]
TOY_SCHEDULE = ["--xe_base_lr", "2e-3", "--max_epochs", "3", "--no_meteor"]


def toy_args(toy: str, out: str) -> list[str]:
    """Flags train.py and test.py share for the toy run."""
    return [*TOY_MODEL, "--exp_name", "DIFNet_lrp_toy", "--features_path", os.path.join(toy, "coco_grid_feats2.hdf5"),
            "--pixel_path", os.path.join(toy, "segmentations"), "--annotation_folder", os.path.join(toy, "annotations"),
            "--vocab_path", os.path.join(out, "vocab.pkl"), "--model_path", os.path.join(out, "models"),
            "--workers", "0"]


def untrained_cider(args: argparse.Namespace) -> float:
    """CIDEr on the toy test split of the model train.py starts from (same seed, same sizes)."""
    train.set_seeds(args.seed)
    splits = load_splits(args.annotation_folder)
    vocab = vocab_for_training(args.vocab_path, args.annotation_folder,
                               [ex.caption for ex in splits["train"] + splits["val"]], CaptionTokenizer())
    model = CaptioningModel(model_config(args, vocab))
    grid, seg = visual_inputs(args)
    loader = DataLoader(ImageDataset(splits["test"], grid, seg), batch_size=10, collate_fn=collate_images)
    results = engine.generate_captions(model, loader, vocab, torch.device("cpu"), "untrained", progress=False)
    return engine.score_captions(results, meteor=False)["CIDEr"]


def constant_caption_baseline(annotation_folder: str) -> tuple[str, float]:
    """The training split's reference caption that, given to every test image, scores the highest CIDEr-D, and
    that CIDEr-D as the demo scores the model (engine.score_captions: df from the test references)."""
    splits = load_splits(annotation_folder)
    tokenizer = PTBTokenizer()
    candidates = tokenizer.tokenize({i: [ex.caption] for i, ex in enumerate(splits["train"])})
    test_refs = ImageDataset(splits["test"], None, None).refs
    tokenized_refs = tokenizer.tokenize(dict(enumerate(test_refs)))
    caption, searched = best_constant_caption([candidates[i][0] for i in range(len(candidates))],
                                              [tokenized_refs[i] for i in range(len(test_refs))])
    value = engine.score_captions([(0, caption, refs) for refs in test_refs], meteor=False)["CIDEr"]
    assert abs(value - searched) < 1e-9, (caption, value, searched)
    return caption, value


def main(toy: str, out: str) -> dict:
    start, cpu_start = time.monotonic(), time.process_time()
    os.makedirs(out, exist_ok=True)
    argv = toy_args(toy, out)
    train_args = train.get_args_parser().parse_args(
        argv + TOY_SCHEDULE + ["--logs_folder", os.path.join(out, "tensorboard")])
    before = untrained_cider(train_args)
    train.main(train_args)

    test_args = test_script.get_args_parser().parse_args(argv + ["--out_path", out, "--no_meteor"])
    results = test_script.predict(test_args)
    after = engine.score_captions(results, meteor=False)["CIDEr"]
    test_script.write_caption_files(results[:10], out, test_args.exp_name)
    baseline_caption, baseline = constant_caption_baseline(test_args.annotation_folder)
    lrp_total.main(test_args)
    figures = show_lrp.main(argparse.Namespace(exp_name=[test_args.exp_name], out_path=out,
                                               image_root=os.path.join(toy, "images"), max_images=3,
                                               composite_images=2))
    composite = [f for f in figures if f.endswith("_relevance.png")]
    summary = {"metric": "CIDEr-D (toy test)", "before": before, "after": after, "baseline": baseline,
               "baseline_name": f"best constant caption: '{baseline_caption}'", "lower_is_better": False,
               "seconds": time.monotonic() - start, "cpu_seconds": time.process_time() - cpu_start,
               "figures": composite + [f for f in figures if f not in composite]}
    result_file = os.path.join(out, "demo_result.json")
    with open(result_file + ".tmp", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(result_file + ".tmp", result_file)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", required=True, help="folder written by python -m toydata.coco_grid")
    parser.add_argument("--out", required=True)
    cli = parser.parse_args()
    run_entry_point(lambda: print(json.dumps(main(cli.toy, cli.out))))
