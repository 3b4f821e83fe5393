"""GIN's part of `make gpu-check` (tools/gpu_check.py runs it): GIN at the original's widths (ResNet-50 FPN, AFS,
GARAN) with seeded random weights; training at 320 x 320, batch 16 (cfg.yaml); boxes of the best anchor for the bf16
comparison (pixels of a 640 x 480 image); ms/image of the whole inference path at 320, 512 and 608, batch 1 and 32.
On CUDA the model and images are channels_last, as code/bench.py runs them.

    python code/gpu_check.py --out ../runs/bench/gpu_check/gin.json [--device cuda] [--tiny]
"""
from __future__ import annotations


import torch

from bench import build, synthetic_batch
from config import DEFAULT_CFG, load_config
from tools import gpu_check_harness as harness

# code/Makefile's toy widths
TINY = {"backbone_width": 8, "backbone_layers": [1, 1, 1, 1], "afs_hidden": 32, "afs_out": 32, "fpn_dim": 32,
        "head_dim": 32, "lstm_dim": 32}
SIZES = (320, 512, 608)


def boxes_batch(bs: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """bench's synthetic batch with a different random target box per image (tlbr in [-1, 1])."""
    batch = synthetic_batch(bs, size, device)
    g = torch.Generator().manual_seed(3)
    corner = torch.rand(bs, 2, generator=g) * 1.2 - 1
    batch["annot"] = torch.cat([corner, corner + 0.2 + torch.rand(bs, 2, generator=g) * 0.6], 1).to(device)
    return batch


def ms_per_image(fresh_model, evaluator, settings: harness.Settings, batches: tuple[int, ...]) -> dict:
    """Inference (model and best-anchor decoding) at each size and batch, in both precisions."""
    model = fresh_model().eval()
    out = {}
    for precision in harness.PRECISIONS:
        for size in SIZES:
            for bs in batches:
                key = f"{precision}/{size}/batch{bs}"
                if settings.out_of_time():
                    out[key] = {"skipped": "time budget spent"}
                    continue
                batch = synthetic_batch(bs, size, settings.device)
                if settings.on_gpu:
                    batch["img"] = batch["img"].contiguous(memory_format=torch.channels_last)

                @torch.inference_mode()
                def run() -> None:
                    with harness.autocast(precision, settings.device):
                        evaluator(model(batch), batch)

                run()
                iters = 1 if settings.tiny else 10
                with harness.Stopwatch(settings.device) as watch:
                    for _ in range(iters):
                        run()
                out[key] = {"ms_per_image": round(1000 * watch.seconds / (iters * bs), 3)}
    return out


def main() -> None:
    args, settings = harness.parse_settings(__doc__.split("\n\n")[0], train_steps=10, infer_iters=5,
                                            budget_s=70)
    if settings.on_gpu:
        torch.backends.cudnn.benchmark = True
    cfg = {**load_config(DEFAULT_CFG), "arch": "gin", **(TINY if args.tiny else {})}
    train_bs, infer_bs = (2, 4) if args.tiny else (16, 32)
    train_size = 128 if args.tiny else 320
    train_batch = boxes_batch(train_bs, train_size, settings.device)
    infer_batch = boxes_batch(infer_bs, train_size, settings.device)
    _, evaluator, loss_fn = build(cfg, train_size, torch.device("cpu"))
    evaluator, loss_fn = evaluator.to(settings.device), loss_fn.to(settings.device)

    def build_model() -> torch.nn.Module:
        torch.manual_seed(0)
        model = build(cfg, train_size, torch.device("cpu"))[0]
        return model.to(memory_format=torch.channels_last) if settings.on_gpu else model

    def extras(fresh_model, settings: harness.Settings) -> dict:
        return {"ms_per_image": ms_per_image(fresh_model, evaluator, settings, (1, 2) if args.tiny else (1, 32))}

    case = harness.ModelCase(
        name="gin", build=build_model,
        make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99)),
        train_batch=train_batch, train_samples=train_bs,
        train_loss=lambda model, batch: loss_fn(model(batch), batch)["loss"],
        infer_batch=infer_batch, infer_items=infer_bs,
        infer=lambda model, batch: evaluator(model(batch), batch)["pred_boxes"].float(),
        agreement=harness.box_agreement, fit_batch=infer_batch, fit_steps=40 if args.tiny else 100, fit_lr=1e-3,
        describe={"size": "tiny" if args.tiny else "paper", "image": train_size,
                  "backbone": f"ResNet width {cfg['backbone_width']}, blocks {cfg['backbone_layers']}",
                  "boxes_in": "pixels of a 640 x 480 image"})
    result = harness.check_model(case, settings, extras=extras)
    harness.write_result("gin", [result], settings, args.out)


if __name__ == "__main__":
    main()
