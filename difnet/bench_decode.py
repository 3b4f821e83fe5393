"""Beam search with and without the key/value cache: the original's path re-projects the whole prefix and the
encoder output at every step, the cached one computes one position per step. Paper sizes (d=512, 3+3 layers,
vocabulary 10,201), beam 5, batch 10 images, 20 steps, random weights and inputs, no gradients.

    python bench_decode.py --out ../runs/bench/difnet_decode.json [--quick] [--mode difnet_lrp --repeats 3]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time

import torch

from models import CaptioningModel, ModelConfig, beam_search

logger = logging.getLogger("difnet")

BEAM_SIZE = 5
EOS = 3


def random_images(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(batch, 49, 2048, generator=g)), torch.rand(batch, 133, 7, 7, generator=g)


@torch.no_grad()
def timed_decode(model: CaptioningModel, images: tuple[torch.Tensor, torch.Tensor], steps: int, cache: bool,
                 repeats: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Least CPU time of ``repeats`` beam searches (after one warm-up; CPU time, not wall time, because this machine
    is shared), and the tokens and log-probabilities."""
    tokens, logprobs = beam_search(model, *images, steps, EOS, BEAM_SIZE, out_size=BEAM_SIZE, cache=cache)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        beam_search(model, *images, steps, EOS, BEAM_SIZE, out_size=BEAM_SIZE, cache=cache)
        best = min(best, time.process_time() - start)
    return best, tokens, logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=str, default="../runs/bench/difnet_decode.json")
    parser.add_argument("--quick", action="store_true", help="batch 2 and one timed repeat (about 20 s of CPU)")
    parser.add_argument("--mode", type=str, default="difnet_lrp")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    batch, repeats = (2, 1) if args.quick else (args.batch, args.repeats)
    torch.manual_seed(0)
    model = CaptioningModel(ModelConfig(mode=args.mode)).eval()
    images = random_images(batch)
    old_s, old_tokens, old_logprobs = timed_decode(model, images, args.steps, False, repeats)
    cached_s, tokens, logprobs = timed_decode(model, images, args.steps, True, repeats)
    result = {
        "subproject": "difnet", "speedup": old_s / cached_s, "identical": torch.equal(tokens, old_tokens),
        "old_s": old_s, "cached_s": cached_s, "max_logprob_diff": (logprobs - old_logprobs).abs().max().item(),
        "mode": args.mode, "batch": batch, "beam_size": BEAM_SIZE, "steps": args.steps, "repeats": repeats,
        "quick": args.quick, "device": f"cpu ({platform.processor() or platform.machine()}, 1 thread)",
    }
    logger.info("difnet beam search (batch %d, beam %d, %d steps): original path %.3f s, cached %.3f s, speed-up "
                "%.2fx, identical tokens %s, max log-prob gap %.1e", batch, BEAM_SIZE, args.steps, old_s, cached_s,
                result["speedup"], result["identical"], result["max_logprob_diff"])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = f"{args.out}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
