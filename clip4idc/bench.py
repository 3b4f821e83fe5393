"""Speed at ViT-B/32 size (random weights): training pairs/s of stage 1 and stage 2, and greedy-captioning pairs/s.
CPU here (fp32); on CUDA also the original's fp16 storage and the bf16-autocast alternative."""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from engine import prep_optimizer
from modules.modeling import CLIP4IDC
from modules.module_clip import ClipConfig
from modules.module_decoder import DecoderConfig
from util import autocast, save_atomic


def batch(n: int, device: torch.device, words: int = 32) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 49000, (n, 1, words), device=device)
    ids[..., -1] = 49407
    return {"ids": ids, "bef": torch.randn(n, 1, 3, 224, 224, device=device),
            "aft": torch.randn(n, 1, 3, 224, 224, device=device), "mask": torch.ones(n, 1, words, device=device).long()}


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def bench_one(task: str, precision: str, device: torch.device, n: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = CLIP4IDC(ClipConfig(), task, DecoderConfig.from_model_dir("decoder-base") if task == "caption" else None,
                     fp16=precision == "fp16").to(device)
    opt = prep_optimizer(model, task, 1e-4, 1e-3, 0.1, 1000)
    b = batch(n, device)

    def step() -> None:
        with autocast(precision, device):
            if task == "retrieval":
                loss = model(b["ids"], b["bef"], b["aft"])
            else:
                loss = model(b["ids"], b["bef"], b["aft"], b["ids"], b["mask"], b["ids"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    out = {"train_pairs_per_s": n / timed(step, repeats, device)}
    if task == "caption":
        model.eval()
        with torch.no_grad():
            def decode() -> None:
                with autocast(precision, device):
                    model.greedy_decode(b["bef"], b["aft"], 49406, 32)
            out["greedy_caption_pairs_per_s"] = n / timed(decode, max(1, repeats // 2), device)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench/clip4idc.json")
    parser.add_argument("--batch", type=int, default=0, help="pairs per step (default 4 on CPU, 32 on CUDA)")
    parser.add_argument("--repeats", type=int, default=0, help="timed steps (default 2 on CPU, 10 on CUDA)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = args.batch or (32 if device.type == "cuda" else 4)
    repeats = args.repeats or (10 if device.type == "cuda" else 2)
    precisions = ["fp16", "bf16", "fp32"] if device.type == "cuda" else ["fp32"]
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
               "torch_threads": torch.get_num_threads(), "batch_pairs": n, "model": "ViT-B/32 CLIP4IDC, random weights",
               "runs": {}}
    for precision in precisions:
        for task in ("retrieval", "caption"):
            results["runs"][f"{task}/{precision}"] = bench_one(task, precision, device, n, repeats)
            print(task, precision, json.dumps(results["runs"][f"{task}/{precision}"]), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_atomic(results, args.out)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
