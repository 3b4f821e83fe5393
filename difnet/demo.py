"""Toy demo: CIDEr of the untrained model on the toy test split, brief cross-entropy training, CIDEr after,
then the LRP figures. Writes <out>/demo_result.json as the top-level `make demo` expects.

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
import lrp_total
import show_lrp
import test as test_script
import train
from builders import model_config, visual_inputs, vocab_for_training
from data.coco import ImageDataset, collate_images, load_splits
from data.text import CaptionTokenizer
from errors import run_entry_point
from models import CaptioningModel

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


def main(toy: str, out: str) -> dict:
    start = time.monotonic()
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
    lrp_total.main(test_args)
    figures = show_lrp.main(argparse.Namespace(exp_name=[test_args.exp_name], out_path=out,
                                               image_root=os.path.join(toy, "images"), max_images=3))
    summary = {"metric": "CIDEr-D (toy test)", "before": before, "after": after,
               "seconds": time.monotonic() - start, "figures": figures}
    with open(os.path.join(out, "demo_result.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", required=True, help="folder written by python -m toydata.coco_grid")
    parser.add_argument("--out", required=True)
    cli = parser.parse_args()
    run_entry_point(lambda: print(json.dumps(main(cli.toy, cli.out))))
