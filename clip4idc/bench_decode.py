"""Greedy captioning, the original's decoding (the whole prefix re-run at every step) against the cached decoder (keys
and values kept, one position per step): seconds, speed-up, identical tokens and the largest log-probability gap.

The paper's decoder (decoder-base: 3 layers, width 512, the 49,408-token BPE vocabulary tied to CLIP's tables) over
the visual tokens of a ViT-B/32 pair (2 x 50 tokens), random weights, eval mode; the visual tower runs once, outside
the timing, as it is the same in both paths."""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time

import torch

from modules.modeling import CLIP4IDC
from modules.module_clip import ClipConfig
from modules.module_decoder import DecoderConfig
from util import save_atomic

logger = logging.getLogger("clip4idc.bench_decode")
SOT = 49406
VISUAL_TOKENS = 100  # ViT-B/32 at 224 px: 50 tokens per image


def paper_decoder() -> CLIP4IDC:
    """The paper's decoder; the CLIP towers (unused here) one block deep to keep the set-up cheap."""
    torch.manual_seed(0)
    clip = ClipConfig(vision_layers=1, transformer_layers=1)
    return CLIP4IDC(clip, "caption", DecoderConfig.from_model_dir("decoder-base"), intra_layers=1).eval()


def timed_decode(model: CLIP4IDC, tokens: torch.Tensor, steps: int, use_cache: bool,
                 repeats: int) -> tuple[float, torch.Tensor, list[torch.Tensor]]:
    """Best of ``repeats`` CPU times (seconds of this process: robust to other jobs on a shared machine; run with one
    thread) of one greedy decode, and its ids and per-step logits."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        ids, logits = model.greedy_from_tokens(tokens, SOT, steps, use_cache)
        best = min(best, time.process_time() - start)
    return best, ids, logits


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench/clip4idc_decode.json")
    parser.add_argument("--batch", type=int, default=16, help="pairs decoded together")
    parser.add_argument("--steps", type=int, default=32, help="greedy steps (the README's --max_words 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per path (the best is kept)")
    parser.add_argument("--quick", action="store_true", help="batch 4, 20 steps, 1 repeat (a few CPU seconds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        args.batch, args.steps, args.repeats = 4, 20, 1
    model = paper_decoder()
    tokens = torch.randn(args.batch, VISUAL_TOKENS, model.decoder.config.hidden_size,
                         generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        old_s, old_ids, old_logits = timed_decode(model, tokens, args.steps, False, args.repeats)
        cached_s, ids, logits = timed_decode(model, tokens, args.steps, True, args.repeats)
    gap = max((a.log_softmax(-1) - b.log_softmax(-1)).abs().max().item() for a, b in zip(old_logits, logits))
    result = {"speedup": old_s / cached_s, "identical": bool(torch.equal(old_ids, ids)), "old_s": old_s,
              "cached_s": cached_s, "max_logprob_diff": gap, "batch": args.batch, "steps": args.steps,
              "repeats": args.repeats, "model": "decoder-base (paper size), random weights, fp32",
              "device": platform.processor() or "cpu", "torch_threads": torch.get_num_threads()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_atomic(result, args.out)
    print(f"clip4idc greedy decode, batch {args.batch}, {args.steps} steps (CPU s): prefix re-run {old_s:.3f}, cached "
          f"{cached_s:.3f}, speed-up {result['speedup']:.2f}x, identical tokens: {result['identical']}, "
          f"max log-prob gap {gap:.1e}")
    return result


if __name__ == "__main__":
    main()
