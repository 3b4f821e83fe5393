"""DMN's part of `make gpu-check` (tools/gpu_check.py runs it): the README's low-res DMN (DPN-92, 10 dynamic filters,
3 SRU layers, vocabulary 12,099) on 512 x 512 images and 9-token queries, with seeded random weights; masks (sigmoid,
bilinear to the image, > 0.5, as evaluation scores them) for the bf16 comparison, in eval mode; training speed at
batch 1 (the original) against batched, through dmn_pytorch.bench.

    python -m dmn_pytorch.gpu_check --out ../runs/bench/gpu_check/dmn.json [--device cuda] [--tiny]
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from shared_eval.masks import MaskIoU
from tools import gpu_check_harness as harness

from .bench import train_step_seconds
from .models import DMN, sru
from .utils.losses import bce_loss

VOCAB = 12099  # bench.train_step_seconds draws words from the README vocabulary
# the Makefile's toy widths (dpn_toy trunk), low-res like the README model
TINY = {"emb_size": 64, "hid_size": 64, "vis_size": 560, "mixed_size": 64, "hid_mixed_size": 64, "backend": "dpn_toy"}


def query_batch(bs: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Images, 9-token queries and one random rectangle mask per image."""
    g = torch.Generator().manual_seed(4)
    corner = (torch.rand(bs, 2, generator=g) * 0.5 * size).long()
    extent = (torch.rand(bs, 2, generator=g) * 0.4 * size).long() + size // 8
    mask = torch.zeros(bs, size, size)
    for i in range(bs):
        y, x = corner[i].tolist()
        h, w = extent[i].tolist()
        mask[i, y:y + h, x:x + w] = 1
    return {"imgs": torch.randn(bs, 3, size, size, generator=g).to(device),
            "words": torch.randint(0, VOCAB, (bs, 9), generator=g).to(device), "masks": mask.to(device)}


def mask_loss(model: DMN, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(batch["imgs"], batch["words"])
    logits = F.interpolate(logits.float(), size=batch["masks"].shape[-2:], mode="bilinear", align_corners=True)
    return bce_loss(logits[:, 0], batch["masks"], torch.ones_like(batch["masks"]))


def predicted_masks(model: DMN, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(batch["imgs"], batch["words"])
    return MaskIoU(align_corners=True).probabilities(logits[:, 0].float(), tuple(batch["masks"].shape[-2:])) > 0.5


def batch1_vs_batched(fresh_model, settings: harness.Settings, size: int, batches: tuple[int, ...]) -> dict:
    """Seconds per training step and samples/s at each batch size (bench.train_step_seconds; bf16 on CUDA only)."""
    model = fresh_model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    out = {}
    for amp in ([False, True] if settings.on_gpu else [False]):
        for bs in batches:
            key = f"{'bf16' if amp else 'fp32'}/batch{bs}"
            if settings.out_of_time():
                out[key] = {"skipped": "time budget spent"}
                continue
            seconds = train_step_seconds(model, optimizer, bs, size, 1 if settings.tiny else 3, settings.device, amp)
            out[key] = {"seconds_per_step": round(seconds, 4), "samples_per_s": round(bs / seconds, 3)}
    return out


def main() -> None:
    args, settings = harness.parse_settings(__doc__.split("\n\n")[0], train_steps=8, infer_iters=5,
                                            budget_s=70)
    widths = TINY if args.tiny else {"backend": "dpn92"}
    size, train_bs, infer_bs = (64, 2, 4) if args.tiny else (512, 4, 8)
    train_batch = query_batch(train_bs, size, settings.device)
    infer_batch = query_batch(infer_bs, size, settings.device)

    def build() -> DMN:
        torch.manual_seed(0)
        return DMN(VOCAB, num_filters=10, lang_layers=3, mix_we=True, high_res=False, **widths)

    def extras(fresh_model, settings: harness.Settings) -> dict:
        return {"train_batch1_vs_batched": batch1_vs_batched(fresh_model, settings, size,
                                                             (1, 4) if args.tiny else (1, 8))}

    case = harness.ModelCase(
        name="dmn", build=build, make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=1e-5),
        train_batch=train_batch, train_samples=train_bs, train_loss=mask_loss,
        infer_batch=infer_batch, infer_items=infer_bs, infer=predicted_masks, agreement=harness.mask_agreement,
        fit_batch=infer_batch, fit_steps=60 if args.tiny else 60, fit_lr=3e-3,
        describe={"size": "tiny" if args.tiny else "paper", "image": size, "backend": widths["backend"],
                  "masks": "eval mode (the original evaluates in train mode: per-batch BatchNorm statistics)"})
    result = harness.check_model(case, settings, extras=extras)
    # OldSRU falls back to its scan for the rest of the process once sru's CUDA kernel raises (float/half only)
    result["sru_cuda_kernel_failed"] = getattr(sru, "_cuda_kernel_failed", None) if settings.on_gpu else None
    harness.write_result("dmn", [result], settings, args.out)


if __name__ == "__main__":
    main()
