"""Evaluate a trained captioner on a split of the prepro'd data (or on a folder of raw images).

    python eval.py --dump_images 0 --num_images 5000 --model checkpoints/<id>/model.pth \
        --infos_path checkpoints/<id>/infos_<id>.pkl --input_json data/cocotalk.json \
        --input_label_h5 data/cocotalk_label.h5 --input_img_feat_dir data/cocobu_att \
        --input_grid_vec_dir data/cocobu_box_vec --language_eval 1
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import torch

import models
from dataloader import DataError, DataLoader
from eval_utils import eval_split, load_references, write_json
from misc.checkpoint import CheckpointError, ensure_writable_dir, load_pickle, load_state_dict
from misc.losses import LanguageModelCriterion

log = logging.getLogger("eval")
# Options never copied from the checkpoint's infos (the original's list, plus this script's own additions).
IGNORE = {"id", "batch_size", "beam_size", "start_from", "language_eval", "device", "seed", "num_workers",
          "skip_corrupt", "max_iters", "ann_file", "meteor", "spice", "bf16", "tensorboard", "decode_cache",
          "compile"}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate a spatial transformer captioner.")
    a = p.add_argument
    a("--device", type=str, default="cuda", help="cuda or cpu")
    a("--model", type=str, default="", help="path to model.pth")
    a("--caption_model", type=str, default="", help="taken from the infos file when empty")
    a("--cnn_model", type=str, default="resnet101", help="resnet101 or resnet152 (--image_folder only)")
    a("--infos_path", type=str, default="", help="path to infos_<id>.pkl")
    a("--batch_size", type=int, default=0, help="> 0 overrides the checkpoint's batch size")
    a("--num_images", type=int, default=-1, help="images to evaluate (-1: all)")
    a("--language_eval", type=int, default=0, help="1: BLEU/METEOR/ROUGE-L/CIDEr (needs Java)")
    a("--dump_images", type=int, default=1, help="copy the evaluated images to vis/imgs (needs --image_root)")
    a("--dump_json", type=int, default=1, help="write the predictions to vis/vis.json")
    a("--dump_path", type=int, default=0, help="also write image paths into vis.json")
    a("--sample_max", type=int, default=1, help="1: argmax words; 0: sample")
    a("--max_ppl", type=int, default=0, help="beam search by max perplexity instead of max probability")
    a("--beam_size", type=int, default=2)
    a("--group_size", type=int, default=1, help="diverse beam search groups")
    a("--diversity_lambda", type=float, default=0.5)
    a("--temperature", type=float, default=1.0)
    a("--decoding_constraint", type=int, default=0, help="1: never the same word twice in a row")
    a("--image_folder", type=str, default="", help="caption the images of this folder (ResNet features on the fly)")
    a("--image_root", type=str, default="", help="root prepended to file_path (for --dump_images)")
    a("--input_fc_feat_dir", type=str, default="data/cocobu_fc")
    a("--input_img_feat_dir", type=str, default="data/cocobu_att")
    a("--input_box_dir", type=str, default="data/cocobu_box")
    a("--input_label_h5", type=str, default="")
    a("--input_json", type=str, default="", help="cocotalk.json; empty: the checkpoint's")
    a("--cnn_weight_dir", type=str, default="", help="directory with resnet101.pth (--image_folder)")
    a("--split", type=str, default="test", help="val, test or train")
    a("--coco_json", type=str, default="", help="--image_folder: a COCO-style json listing the images to use")
    a("--input_rel_box_dir", type=str, default="")
    a("--input_grid_vec_dir", type=str, default="/data/cocobu_box_vec/")
    a("--id", type=str, default="", help="run id for eval_results/<id>_<split>.json; default: the checkpoint's")
    a("--verbose_beam", type=int, default=1, help="log every finished beam")
    a("--verbose_loss", type=int, default=0, help="also compute the loss")
    # Added here (not in the original eval.py)
    a("--ann_file", type=str, default="coco-caption/annotations/captions_val2014.json",
      help="COCO captions annotations for --language_eval")
    a("--meteor", type=int, default=1)
    a("--spice", type=int, default=0)
    a("--num_workers", type=int, default=0)
    a("--skip_corrupt", type=int, default=0, help="1: skip images whose feature files are corrupt instead of stopping")
    a("--seed", type=int, default=123)
    a("--compile", type=int, default=0, choices=[0, 1],
      help="1: torch.compile the cached decoder's one-position step (pays off only on long runs, see README)")
    a("--decode_cache", type=int, default=1, choices=[0, 1],
      help="1: decode one position per step with cached keys/values; 0: re-decode the whole prefix at every step, "
           "as the original (same captions, slower)")
    return p


def merge_options(opt: argparse.Namespace, infos: dict) -> argparse.Namespace:
    """Copy every training option the command line lacks; warn where a given one differs from training's."""
    saved = infos["opt"]
    if not opt.input_img_feat_dir:
        opt.input_img_feat_dir, opt.input_box_dir = saved.input_img_feat_dir, saved.input_box_dir
    if not opt.input_label_h5:
        opt.input_label_h5 = saved.input_label_h5
    if not opt.input_json:
        opt.input_json = saved.input_json
    if opt.batch_size == 0:
        opt.batch_size = saved.batch_size
    if not opt.id:
        opt.id = saved.id
    if not opt.caption_model:
        opt.caption_model = saved.caption_model
    for key, value in vars(saved).items():
        if key in IGNORE:
            continue
        if key not in vars(opt):
            setattr(opt, key, value)
        elif vars(opt)[key] != value and key not in ("input_json", "input_label_h5", "input_img_feat_dir",
                                                    "input_grid_vec_dir", "input_box_dir", "input_fc_feat_dir",
                                                    "input_rel_box_dir"):
            # The original asks y/N here; a warning keeps batch jobs running.
            log.warning("option %s differs from training (%r vs %r)", key, vars(opt)[key], value)
    return opt


def build_loader(opt: argparse.Namespace):
    if opt.image_folder:
        from dataloaderraw import DataLoaderRaw
        return DataLoaderRaw(opt)
    return DataLoader(opt, opt.split, length=opt.num_images)


def check_inputs(opt: argparse.Namespace) -> None:
    """Every file and folder the run reads or writes, checked before the first image is decoded."""
    if not os.path.isfile(opt.model):
        raise CheckpointError(f"--model {opt.model or '(none given)'} not found: pass the model.pth of a training run")
    if opt.image_root and not os.path.isdir(opt.image_root):
        raise DataError(f"--image_root {opt.image_root} is not a directory: pass the folder holding the images' "
                        "file_path (e.g. the COCO image root)")
    if opt.language_eval == 1:
        load_references(opt.ann_file)  # raises with the fix when missing or not COCO captions
        ensure_writable_dir("eval_results", "--language_eval 1 writes its results there")
    if opt.dump_json == 1 or opt.dump_images == 1:
        ensure_writable_dir("vis", "--dump_json/--dump_images write there")


def run(opt: argparse.Namespace) -> tuple[float, list[dict], dict | None]:
    if not os.path.isfile(opt.infos_path):
        raise CheckpointError(f"--infos_path {opt.infos_path or '(none given)'} not found: pass the infos_<id>.pkl "
                              "of a training run")
    infos = load_pickle(opt.infos_path)
    if not isinstance(infos, dict) or not {"opt", "vocab"} <= infos.keys():
        raise CheckpointError(f"--infos_path {opt.infos_path} holds no 'opt'/'vocab': pass the infos_<id>.pkl "
                              "written by train.py")
    opt = merge_options(opt, infos)
    check_inputs(opt)
    vocab = infos["vocab"]
    device = torch.device("cuda" if opt.device == "cuda" and torch.cuda.is_available() else "cpu")
    loader = build_loader(opt)
    if not opt.image_folder and loader.vocab_size() != len(vocab):
        raise CheckpointError(f"{opt.input_json} has {loader.vocab_size()} words but the checkpoint "
                              f"{opt.infos_path} was trained with {len(vocab)}: use its cocotalk.json")
    loader.set_vocab(vocab)  # decode with the checkpoint's vocabulary, as the original
    opt.vocab_size, opt.seq_length = len(vocab), infos["opt"].seq_length
    model = models.setup(opt).to(device)
    load_state_dict(model, opt.model, device)
    model.eval()
    if opt.compile:
        model.compile_decoding()
    loss, predictions, lang_stats = eval_split(model, LanguageModelCriterion(), loader, vars(opt), device)
    if getattr(loader, "skipped", 0):
        log.warning("--skip_corrupt: %d corrupt image(s) skipped", loader.skipped)
    log.info("loss %.4f", loss)
    if lang_stats:
        log.info("%s", json.dumps(lang_stats))
    if opt.dump_json == 1:
        write_json(predictions, "vis/vis.json")
    return loss, predictions, lang_stats


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    opt = get_parser().parse_args(argv)
    try:
        run(opt)
    except (DataError, CheckpointError, FileNotFoundError) as err:
        print(f"eval.py: {' '.join(str(err).split())}", file=sys.stderr)  # one line, whatever the message
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
