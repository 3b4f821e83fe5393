"""Beam search with the cached decoder against the original's full-prefix re-decoding, at the paper's size.

The README's model (6 layers, d_model 512, ff 2048, X-Linear cross attention, grid encoding, vocabulary 9487) with
random weights, beam 5, 10 images of 50 boxes, 20 decoding steps, one CPU thread. Both decoders run on the same
weights and inputs; the JSON records their CPU seconds, the speed-up, whether the captions are identical and the
largest gap between their log-probabilities.

    python bench_decode.py [--quick] [--out runs/bench/decode_spatial_captioning.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time

import torch

from models import TransformerConfig, TransformerModel

log = logging.getLogger("bench_decode")


def timed_beam_search(model: TransformerModel, inputs: tuple, beam_size: int, cached: bool
                      ) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(CPU seconds, wall seconds, captions, their log-probs) of one beam search over the batch."""
    feats, masks, grids = inputs
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.no_grad():
        seq, logprobs = model.sample(feats, masks, grids, {"beam_size": beam_size, "decode_cache": int(cached)})
    return time.process_time() - cpu, time.perf_counter() - wall, seq, logprobs


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 images, 12 steps, 3 layers (well under a CPU minute)")
    p.add_argument("--out", default="runs/bench/decode_spatial_captioning.json", help="JSON file written atomically")
    p.add_argument("--batch", type=int, default=10, help="images")
    p.add_argument("--beam_size", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="decoding steps (caption length)")
    p.add_argument("--boxes", type=int, default=50, help="regions per image")
    p.add_argument("--num_layers", type=int, default=6)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        args.batch, args.steps, args.num_layers = 2, 12, 3
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = TransformerConfig(seq_length=args.steps, num_layers=args.num_layers)
    model = TransformerModel(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    inputs = (torch.rand(args.batch, args.boxes, cfg.img_feat_size, generator=gen), None,
              torch.rand(args.batch, args.boxes, cfg.num_grids, generator=gen))
    old_cpu, old_wall, old_seq, old_lp = timed_beam_search(model, inputs, args.beam_size, cached=False)
    new_cpu, new_wall, new_seq, new_lp = timed_beam_search(model, inputs, args.beam_size, cached=True)
    result = {"speedup": old_cpu / new_cpu, "identical": bool(torch.equal(old_seq, new_seq)),
              "old_s": old_cpu, "cached_s": new_cpu, "max_logprob_diff": float((old_lp - new_lp).abs().max()),
              "old_wall_s": old_wall, "cached_wall_s": new_wall, "seconds": "CPU seconds (process time)",
              "words": int((new_seq > 0).sum()), "batch": args.batch, "beam_size": args.beam_size,
              "steps": args.steps, "boxes": args.boxes, "num_layers": cfg.num_layers,
              "d_model": cfg.input_encoding_size, "ff_size": cfg.ff_size, "vocab": cfg.vocab_size,
              "cross_attn": cfg.cross_attn, "quick": args.quick, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = f"{args.out}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    log.info("spatial_captioning beam search (beam %d, %d images, %d steps, %d layers): full prefix %.1f s, cached "
             "%.1f s CPU, %.2fx faster, identical captions: %s, max log-prob gap %.1e", args.beam_size, args.batch,
             args.steps, cfg.num_layers, old_cpu, new_cpu, result["speedup"], result["identical"],
             result["max_logprob_diff"])
    return result


if __name__ == "__main__":
    main()
