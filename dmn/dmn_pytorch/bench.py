"""Training speed of the README model: batch size 1 (the original) against batched training.

``python -m dmn_pytorch.bench --out runs/bench/dmn.json`` (``make dmn-bench``). Synthetic inputs of the README's
size (512 x 512, 9-token queries, vocabulary 12,099); random weights (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from .models import DMN
from .utils.losses import bce_loss


def train_step_seconds(model: DMN, optimizer: torch.optim.Optimizer, batch: int, size: int, steps: int,
                       device: torch.device, amp: bool) -> float:
    """Mean wall seconds of one optimizer step on ``batch`` samples (after one warm-up step)."""
    imgs = torch.randn(batch, 3, size, size, device=device)
    words = torch.randint(0, 12099, (batch, 9), device=device)
    target = (torch.rand(batch, size, size, device=device) > 0.9).float()
    valid = torch.ones_like(target)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else nullcontext()
    times = []
    for step in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            logits = model(imgs, words)
        logits = F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        loss = bce_loss(logits, target, valid)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step > 0:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench/dmn.json")
    parser.add_argument("--size", type=int, default=512, help="image side (README: 512)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="default: 1 2 on CPU (a 512x512 sample needs ~7 GB to train there), 1 4 8 on CUDA")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per batch size")
    parser.add_argument("--high-res", action="store_true")
    parser.add_argument("--backend", default="dpn92")
    parser.add_argument("--vis-size", type=int, default=2688)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = DMN(12099, vis_size=args.vis_size, num_filters=10, lang_layers=3, mix_we=True, backend=args.backend,
                high_res=args.high_res).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)
    batch_sizes = args.batch_sizes or ([1, 4, 8] if device.type == "cuda" else [1, 2])
    rows = []
    for amp in ([False, True] if device.type == "cuda" else [False]):
        for batch in batch_sizes:
            seconds = train_step_seconds(model, optimizer, batch, args.size, args.steps, device, amp)
            rows.append({"batch_size": batch, "bf16_autocast": amp, "seconds_per_step": round(seconds, 3),
                         "samples_per_second": round(batch / seconds, 3)})
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "model": f"DMN {'high' if args.high_res else 'low'}-res, {args.backend}, README widths",
        "input": f"{args.size}x{args.size}, 9 tokens", "device": torch.cuda.get_device_name() if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} thread(s)",
        "torch": torch.__version__, "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
