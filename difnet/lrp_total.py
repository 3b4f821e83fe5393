"""LRP step 2: relevance of the 7x7 visual cells and of the previous words for every generated word.

Reads <out_path>/<exp>.json (generate_caption.py / test1.py) and <model_path>/<exp>.pth; writes
<out_path>/<exp>_result.pkl, a list with one dict per image:
    'src' (1, 49, 2048) grid features, 'dst' (1, T) <bos> + generated words (no <eos>),
    'inp_lrp' (T, 49) relevance of each encoder cell summed over channels, for target position t,
    'out_lrp' (T, T) |relevance| of each decoder input position,
and, beyond the original, 'image_id', 'file_name' and 'words' (the top-1 word at each position) for show_lrp.py.

    python lrp_total.py --mode difnet_lrp --exp_name DIFNet_lrp
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle

import numpy as np
import torch
from tqdm import tqdm

from builders import visual_inputs
from data.coco import load_splits
from data.text import CaptionTokenizer
from errors import DifnetError, run_entry_point
from models import CaptioningModel, recording
from test import get_args_parser, load_model

logger = logging.getLogger("difnet")


def caption_relevance(model: CaptioningModel, grid: torch.Tensor, seg: torch.Tensor | None,
                      tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """One teacher-forced pass, then for each target position t relevance from its top-1 word (alpha=1).

    Returns inp_lrp (T, 49), out_lrp (T, T) and the top-1 word ids (T,).
    """
    with torch.no_grad(), recording(model):
        logits = model(grid, tokens, seg)
    top1 = torch.zeros_like(logits).scatter_(2, logits.argmax(-1, keepdim=True), 1)
    inp_lrp, out_lrp = [], []
    for t in range(tokens.shape[1]):
        R = torch.zeros_like(top1)
        R[:, t] = top1[:, t]
        rel = model.relprop_encode_decode(R, alpha=1)
        inp_lrp.append(rel["emb_inp"].sum(-1)[0].cpu().numpy())
        out_lrp.append(rel["emb_out"].abs().sum(-1)[0].cpu().numpy())
    return np.array(inp_lrp), np.array(out_lrp), logits.argmax(-1)[0]


def main(args: argparse.Namespace) -> list[dict]:
    model, vocab = load_model(args)
    captions_file = os.path.join(args.out_path, f"{args.exp_name}.json")
    try:
        with open(captions_file) as f:
            captions = json.load(f)
    except FileNotFoundError:
        raise DifnetError(f"{captions_file} not found: run generate_caption.py (or test1.py) with the same "
                          "--exp_name and --out_path first") from None
    files = {ex.image_id: ex.file_name for ex in load_splits(args.annotation_folder)["test"]}
    grid_reader, seg_reader = visual_inputs(args)
    tokenizer = CaptionTokenizer()
    device = torch.device(args.device)
    result = []
    for image_id in tqdm(captions, desc="LRP", unit="it"):
        words = ["<bos>"] + tokenizer(captions[image_id]["gen"][0])
        tokens = torch.tensor([[vocab.stoi[w] for w in words]], device=device)
        grid = torch.from_numpy(grid_reader[int(image_id)]).unsqueeze(0)
        # the original always reads the val2014 segmentation folder (the test split is in val2014)
        seg = torch.from_numpy(seg_reader(int(image_id), "val2014")).unsqueeze(0).to(device) if seg_reader else None
        inp_lrp, out_lrp, top1 = caption_relevance(model, grid.to(device), seg, tokens)
        result.append({"src": grid.numpy(), "dst": tokens.cpu().numpy(), "inp_lrp": inp_lrp, "out_lrp": out_lrp,
                       "image_id": int(image_id), "file_name": files.get(int(image_id), ""),
                       "words": [vocab.itos[i] for i in top1.tolist()]})
    out_file = os.path.join(args.out_path, f"{args.exp_name}_result.pkl")
    with open(out_file + ".tmp", "wb") as f:
        pickle.dump(result, f)
    os.replace(out_file + ".tmp", out_file)
    logger.info("wrote %s (%d captions)", out_file, len(result))
    return result


if __name__ == "__main__":
    parser = get_args_parser(batch_size=1)
    parser.set_defaults(workers=1)
    parser.add_argument("--coco_dataset", default="/DataSet/COCO/val2014", help="unused, as in the original")
    run_entry_point(lambda: main(parser.parse_args()))
