"""Speed at the paper's size (d=512, 3+3 layers, vocabulary 10,201, batch 50 captions, beam 5, 20 words):
cross-entropy training steps per second and beam-search captions per second, on random inputs.

    python bench.py --out ../runs/bench/difnet.json [--mode difnet_lrp --device cuda --bf16 --steps 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

import engine
from models import CaptioningModel, ModelConfig, beam_search


def inputs(batch: int, length: int, vocab: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    grid = torch.relu(torch.randn(batch, 49, 2048, generator=g)).to(device)
    seg = torch.rand(batch, 133, 7, 7, generator=g).to(device)
    tokens = torch.randint(4, vocab, (batch, length), generator=g)
    tokens[:, 0] = 2
    tokens[:, -1] = 3
    return grid, seg, tokens.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_steps_per_second(model: CaptioningModel, device: torch.device, steps: int, bf16: bool) -> float:
    grid, seg, tokens = inputs(50, 16, model.cfg.vocab_size, device)
    optim = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98))
    loss_fn = torch.nn.NLLLoss(ignore_index=1)
    model.train()

    def step() -> None:
        with engine.autocast(device, bf16):
            out = model(grid, tokens, seg)
        loss = loss_fn(out[:, :-1].float().reshape(-1, out.shape[-1]), tokens[:, 1:].reshape(-1))
        optim.zero_grad()
        loss.backward()
        optim.step()

    step()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - start)


@torch.no_grad()
def captions_per_second(model: CaptioningModel, device: torch.device, batches: int, batch: int = 50) -> float:
    grid, seg, _ = inputs(batch, 2, model.cfg.vocab_size, device)
    model.eval()
    beam_search(model, grid, seg, engine.MAX_LEN, 3, engine.BEAM_SIZE)
    sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        beam_search(model, grid, seg, engine.MAX_LEN, 3, engine.BEAM_SIZE)
    sync(device)
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=str, default="../runs/bench/difnet.json")
    parser.add_argument("--mode", type=str, default="difnet_lrp")
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--fused_attention", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--beam_batches", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = CaptioningModel(ModelConfig(mode=args.mode, fused_attention=args.fused_attention)).to(device)
    result = {
        "subproject": "difnet", "mode": args.mode, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "bf16": args.bf16 and device.type == "cuda", "fused_attention": args.fused_attention,
        "train_batch_captions": 50,
        "train_steps_per_s": train_steps_per_second(model, device, args.steps, args.bf16),
        "beam_size": engine.BEAM_SIZE, "beam_captions_per_s": captions_per_second(model, device, args.beam_batches),
    }
    print(json.dumps(result))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
