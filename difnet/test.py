"""Evaluate a DIFNet checkpoint on the Karpathy test split: beam search (5 beams, 20 words), then BLEU-1..4,
METEOR, ROUGE-L and CIDEr (shared_eval, pycocoevalcap-exact).

    python test.py --mode difnet_lrp --exp_name DIFNet_lrp   # reads <model_path>/DIFNet_lrp.pth
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random

import numpy as np
import torch
from torch.utils.data import DataLoader

import engine
from builders import (add_data_args, add_model_args, load_checkpoint, load_weights, model_config, visual_inputs)
from data.coco import CorruptSamples, ImageDataset, check_visual_inputs, collate_images, load_splits
from data.vocab import load_vocab
from errors import run_entry_point
from models import CaptioningModel, ModelConfig
from shared_eval.captions import Cider, PTBTokenizer

logger = logging.getLogger("difnet")


def get_args_parser(batch_size: int = 50) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="DIFNet")
    parser.add_argument("--exp_name", type=str, default="transformer_grid_original")
    parser.add_argument("--batch_size", type=int, default=batch_size)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--model_path", type=str, default="./output/saved_transformer_models")
    parser.add_argument("--out_path", type=str, default="./output/output_lrp")
    parser.add_argument("--embed_size", type=int, default=512, help="unused, as in the original")
    parser.add_argument("--no_meteor", action="store_true", help="skip METEOR (Java)")
    add_data_args(parser)
    add_model_args(parser)
    return parser


def checkpoint_path(model_path: str, exp_name: str, suffix: str = "") -> str:
    """<model_path>/<exp_name><suffix>.pth; without a suffix, falls back to train.py's <exp_name>_best.pth."""
    path = os.path.join(model_path, f"{exp_name}{suffix}.pth")
    best = os.path.join(model_path, f"{exp_name}_best.pth")
    if not suffix and not os.path.isfile(path) and os.path.isfile(best):
        return best
    return path


def load_model(args: argparse.Namespace, suffix: str = "") -> tuple[CaptioningModel, object]:
    """The model of ``args.mode`` with the checkpoint's weights (sizes from the checkpoint when it records them)."""
    vocab = load_vocab(args.vocab_path)
    path = checkpoint_path(args.model_path, args.exp_name, suffix)
    data = load_checkpoint(path)
    cfg = model_config(args, vocab)
    if "config" in data:  # our checkpoints record the model sizes; the released one has the defaults
        # the vocabulary's size and indices come from --vocab_path, so that load_weights can refuse a mismatch
        cfg = ModelConfig(**{**data["config"], "mode": args.mode, "fused_attention": args.fused_attention,
                             "vocab_size": cfg.vocab_size, "padding_idx": cfg.padding_idx, "bos_idx": cfg.bos_idx})
    model = CaptioningModel(cfg)
    load_weights(model, data["state_dict"], path)
    return model.to(args.device).eval(), vocab


def predict(args: argparse.Namespace, suffix: str = "") -> list[tuple[int, str, list[str]]]:
    random.seed(1234)
    torch.manual_seed(1234)
    np.random.seed(1234)
    model, vocab = load_model(args, suffix)
    test = load_splits(args.annotation_folder)["test"]
    grid, seg = visual_inputs(args)
    check_visual_inputs(test, grid, seg)
    corrupt = CorruptSamples() if args.skip_corrupt else None
    loader = DataLoader(ImageDataset(test, grid, seg, corrupt), batch_size=args.batch_size, num_workers=args.workers,
                        collate_fn=collate_images)
    results = engine.generate_captions(model, loader, vocab, torch.device(args.device), "Evaluation",
                                       cache=args.decode_cache == "on")
    if corrupt is not None:
        logger.info("--skip_corrupt: skipped %d corrupt images of %d", corrupt.count, len(loader.dataset))
    return results


def write_caption_files(results: list[tuple[int, str, list[str]]], out_path: str, exp_name: str) -> None:
    """<exp>.json {image_id: {"gen": [caption], "gts": [refs]}} and <exp>_cider.json {"cider": [per image]}:
    the inputs of lrp_total.py. (The original keys every image of a batch by the batch's first id.)"""
    os.makedirs(out_path, exist_ok=True)
    captions = {str(image_id): {"gen": [gen], "gts": refs} for image_id, gen, refs in results}
    gts = PTBTokenizer().tokenize({str(i): refs for i, (_, _, refs) in enumerate(results)})
    res = PTBTokenizer().tokenize({str(i): [gen] for i, (_, gen, _) in enumerate(results)})
    _, per_image = Cider().compute_score(gts, res)
    for name, obj in ((f"{exp_name}.json", captions), (f"{exp_name}_cider.json", {"cider": [float(c) for c in per_image]})):
        tmp = os.path.join(out_path, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, os.path.join(out_path, name))


def main(args: argparse.Namespace) -> dict:
    logger.info("%s Evaluation", args.mode)
    scores = engine.score_captions(predict(args), meteor=not args.no_meteor)
    print(engine.original_format(scores))
    return scores


if __name__ == "__main__":
    run_entry_point(lambda: main(get_args_parser().parse_args()))
