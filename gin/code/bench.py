"""Speed of GIN (full original widths): batched inference images/s at 320/512/608 and training samples/s.

    python code/bench.py --out runs/bench/gin.json [--device auto] [--batch 8] [--train_bs 16] [--arch gin]

Inference is the whole path to boxes: phrase LSTM, backbone, head, best-anchor decoding (no NMS, no per-image Python
loop). On CUDA it uses bf16 autocast and channels_last; on CPU float32. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from config import DEFAULT_CFG, GIN_DIR, anchor_ratios_scales, load_config
from engine import autocast
from models import build_model
from models.evaluator import Evaluator
from util.checkpoint import atomic_write_bytes
from models.loss import ZSGLoss


def synthetic_batch(bs: int, size: int, device: torch.device, qlen: int = 6) -> dict[str, torch.Tensor]:
    g = size // 8
    return {"img": torch.rand(bs, 3, size, size, device=device), "qvec": torch.randn(bs, qlen, 300, device=device),
            "qlens": torch.full((bs,), float(qlen), device=device),
            "annot": torch.tensor([[-0.5, -0.5, 0.5, 0.5]], device=device).repeat(bs, 1),
            "idxs": torch.arange(bs, device=device).float(),
            "img_size": torch.tensor([[480.0, 640.0]], device=device).repeat(bs, 1),
            **{f"iou_annot_stage_{i}": torch.rand(bs, g >> i, g >> i, device=device) for i in range(3)}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_it(fn, device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call: wall time on CUDA; on CPU the process's CPU time, which equals wall time on an idle core
    and stays meaningful on a shared, oversubscribed machine (both are printed)."""
    for _ in range(warmup):
        fn()
    sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        fn()
    sync(device)
    wall, cpu = (time.perf_counter() - start) / iters, (time.process_time() - cpu_start) / iters
    print(f"  ({wall:.3f} s wall, {cpu:.3f} s CPU per call)", flush=True)
    return wall if device.type == "cuda" else cpu


def build(cfg: dict, size: int, device: torch.device) -> tuple[torch.nn.Module, Evaluator, ZSGLoss]:
    cfg = {**cfg, "resize_img": [size, size], "lstm_init": "zeros"}
    ratios, scales = anchor_ratios_scales(cfg)
    model = build_model(cfg, len(ratios) * len(scales), load_pretrained=False).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model, Evaluator(ratios, scales), ZSGLoss(ratios, scales, use_att_loss=cfg["arch"] == "gin")


def bench_inference(cfg: dict, size: int, bs: int, device: torch.device, amp: bool, iters: int) -> float:
    model, evaluator, _ = build(cfg, size, device)
    model.eval()
    batch = synthetic_batch(bs, size, device)
    if device.type == "cuda":
        batch["img"] = batch["img"].contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def step():
        with autocast(device, amp):
            out = model(batch)
        return evaluator(out, batch)["pred_boxes"]

    return bs / time_it(step, device, warmup=1 if device.type == "cpu" else 5, iters=iters)


def bench_training(cfg: dict, size: int, bs: int, device: torch.device, amp: bool, iters: int) -> float:
    model, _, loss_fn = build(cfg, size, device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99))
    batch = synthetic_batch(bs, size, device)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            out = model(batch)
        loss_fn(out, batch)["loss"].backward()
        opt.step()

    return bs / time_it(step, device, warmup=1, iters=iters)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=GIN_DIR.parent / "runs" / "bench" / "gin.json")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default="gin", choices=["gin", "zsgnet"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 512, 608])
    parser.add_argument("--batch", type=int, default=None, help="inference batch (default 32 on CUDA, 2 on CPU)")
    parser.add_argument("--train_bs", type=int, default=16)
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (default 20 on CUDA, 2 on CPU)")
    parser.add_argument("--no_amp", action="store_true", help="float32 on CUDA too")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    bs = args.batch or (32 if on_gpu else 2)
    iters = args.iters or (20 if on_gpu else 2)
    amp = on_gpu and not args.no_amp
    cfg = load_config(DEFAULT_CFG if args.arch == "gin" else GIN_DIR / "configs" / "zsgnet.yaml")
    cfg["arch"] = args.arch
    name = torch.cuda.get_device_name(device) if on_gpu else \
        f"CPU ({platform.processor() or 'cpu'}), {torch.get_num_threads()} thread(s)"
    result = {"device": name, "timing": "wall" if on_gpu else "process CPU time", "arch": args.arch,
              "dtype": "bf16 autocast" if amp else "float32",
              "inference_batch": bs, "inference_images_per_s": {}, "train_bs": args.train_bs}
    for size in args.sizes:
        ips = bench_inference(cfg, size, bs, device, amp, iters)
        result["inference_images_per_s"][str(size)] = ips
        print(f"{args.arch} inference {size}x{size} batch {bs}: {ips:.2f} images/s ({1000 / ips:.1f} ms/image)", flush=True)
    sps = bench_training(cfg, 320, args.train_bs, device, amp, max(1, iters // 2))
    result["train_samples_per_s_320"] = sps
    print(f"{args.arch} training 320x320 batch {args.train_bs}: {sps:.2f} samples/s", flush=True)
    atomic_write_bytes(args.out, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
