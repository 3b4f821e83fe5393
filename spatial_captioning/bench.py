"""Training speed at the README's sizes: XE steps/s (batch 15 images x 5 captions) and SCST steps/s (batch 9).

Synthetic inputs in the real shapes (vocabulary 9487, 16 words, 50 boxes of 2048-d features, 144-cell grid
vectors); the CIDEr-D reward uses synthetic document frequencies. Writes a JSON file with the figures.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time

import numpy as np
import torch

from engine import scst_loss, xe_loss
from misc.losses import LanguageModelCriterion, RewardCriterion
from misc.optim import clip_gradient, get_std_opt
from misc.scorers import CiderD
from models import TransformerConfig, TransformerModel


def synthetic_batch(images: int, seq_per_img: int, boxes: int, cfg: TransformerConfig, gen: torch.Generator) -> dict:
    n = images * seq_per_img
    feats = torch.rand(images, boxes, cfg.img_feat_size, generator=gen).repeat_interleave(seq_per_img, 0)
    grids = torch.rand(images, boxes, cfg.num_grids, generator=gen).repeat_interleave(seq_per_img, 0)
    words = torch.randint(1, cfg.vocab_size, (n, cfg.seq_length), generator=gen)
    labels = torch.nn.functional.pad(words, (1, 1))
    gts = [words[i * seq_per_img:(i + 1) * seq_per_img].numpy().astype(np.uint32) for i in range(images)]
    return {"img_feats": feats, "img_masks": None, "boxes": grids, "labels": labels,
            "label_masks": torch.ones(n, cfg.seq_length + 2), "gts": gts}


def timed_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench/spatial_captioning.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--boxes", type=int, default=50)
    p.add_argument("--bf16", type=int, default=1, help="bfloat16 autocast on CUDA")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = TransformerConfig()
    model = TransformerModel(cfg).to(device).train()
    optimizer = get_std_opt(model, factor=1, warmup=10000)
    crit, rl_crit = LanguageModelCriterion(), RewardCriterion()
    gen = torch.Generator().manual_seed(0)
    df = {(str(i),): float(i % 50 + 1) for i in range(cfg.vocab_size)}
    scorer = CiderD(df, 113287)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" and args.bf16 \
        else contextlib.nullcontext
    xe_batch = synthetic_batch(15, 5, args.boxes, cfg, gen)
    sc_batch = synthetic_batch(9, 5, args.boxes, cfg, gen)
    sc_opt = argparse.Namespace(cider_reward_weight=1.0, bleu_reward_weight=0.0, decode_cache=1)

    def xe_step() -> None:
        optimizer.zero_grad()
        with ctx():
            loss = xe_loss(model, crit, xe_batch, device)
        loss.backward()
        clip_gradient(model.parameters(), 0.1)
        optimizer.step()

    def scst_step() -> None:
        optimizer.zero_grad()
        with ctx():
            loss, _ = scst_loss(model, rl_crit, scorer, sc_batch, device, sc_opt, 5)
        loss.backward()
        clip_gradient(model.parameters(), 0.1)
        optimizer.step()

    xe = timed_steps(xe_step, args.steps, args.warmup, device)
    sc = timed_steps(scst_step, args.steps, args.warmup, device)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "threads": torch.get_num_threads(), "bf16": bool(args.bf16 and device.type == "cuda"),
              "boxes": args.boxes, "xe_steps_per_s": xe, "xe_batch": "15 images x 5 captions",
              "scst_steps_per_s": sc, "scst_batch": "9 images x 5 samples",
              "xe_epoch_hours": 7553 / xe / 3600, "scst_epoch_hours": 113287 / 9 / sc / 3600}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
