"""spatial_captioning's part of `make gpu-check` (tools/gpu_check.py runs it): the README's spatial_pe transformer
(6 layers, d=512, xlinear cross-attention, vocabulary 9487, 50 boxes) with seeded random weights, XE training on
15 images x 5 captions, greedy captions for the bf16 comparison, and one SCST iteration (9 images x 5 samples,
CIDEr-D reward against the greedy baseline) per precision, through engine.scst_loss.

    python gpu_check.py --out ../runs/bench/gpu_check/spatial_captioning.json [--device cuda] [--tiny]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from bench import synthetic_batch
from engine import scst_loss, xe_loss
from misc.losses import LanguageModelCriterion, RewardCriterion
from misc.optim import clip_gradient, get_std_opt
from misc.rewards import array_to_str
from misc.scorers import CiderD
from models import TransformerConfig, TransformerModel
from tools import gpu_check_harness as harness

TINY = {"vocab_size": 1000, "num_layers": 2, "input_encoding_size": 64, "ff_size": 256, "heads": 4}


def greedy_ids(model: TransformerModel, data: dict) -> torch.Tensor:
    return model.sample(data["img_feats"], data["img_masks"], data["boxes"], opt={"sample_max": 1})[0]


def scst_iteration(model: TransformerModel, data: dict, seq_per_img: int, precision: str,
                   settings: harness.Settings) -> dict:
    """One self-critical step of train.py. Each image's references are its own float32 greedy caption and
    random ones, so the CIDEr-D reward is not identically zero under random weights."""
    model.eval()
    with torch.no_grad():
        rows = torch.arange(0, data["img_feats"].shape[0], seq_per_img)
        pick = {k: None if data[k] is None else data[k][rows] for k in ("img_feats", "img_masks", "boxes")}
        greedy = greedy_ids(model, pick).cpu().numpy().astype(np.uint32)
    gts = [np.concatenate([greedy[i:i + 1], refs[1:]]) for i, refs in enumerate(data["gts"])]
    scorer = CiderD.from_references([[array_to_str(r) for r in refs] for refs in gts])
    options = argparse.Namespace(cider_reward_weight=1.0, bleu_reward_weight=0.0, decode_cache=1)
    optimizer = get_std_opt(model, factor=1, warmup=10000)
    model.train()
    with harness.Stopwatch(settings.device) as watch:
        optimizer.zero_grad()
        with harness.autocast(precision, settings.device):
            loss, stats = scst_loss(model, RewardCriterion(), scorer, {**data, "gts": gts}, settings.device,
                                    options, seq_per_img)
        loss.backward()
        clip_gradient(model.parameters(), 0.1)
        optimizer.step()
    return {"seconds": round(watch.seconds, 3), "images": len(gts), "samples_per_image": seq_per_img,
            "reward_mean": round(stats.reward, 5), "sample_cider": round(stats.sample_score, 5),
            "greedy_cider": round(stats.greedy_score, 5), "loss": round(loss.item(), 6),
            "loss_finite": bool(torch.isfinite(loss))}


def on_device(data: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in data.items()}


def main() -> None:
    args, settings = harness.parse_settings(__doc__.split("\n\n")[0], train_steps=10, infer_iters=5,
                                            budget_s=50)
    cfg = TransformerConfig(**(TINY if args.tiny else {}))
    boxes = 10 if args.tiny else 50
    (xe_images, scst_images, infer_images) = (2, 2, 4) if args.tiny else (15, 9, 50)
    gen = torch.Generator().manual_seed(0)
    xe_batch = on_device(synthetic_batch(xe_images, 5, boxes, cfg, gen), settings.device)
    scst_batch = on_device(synthetic_batch(scst_images, 5, boxes, cfg, gen), settings.device)
    infer_batch = on_device(synthetic_batch(infer_images, 1, boxes, cfg, gen), settings.device)
    crit = LanguageModelCriterion()

    def build() -> TransformerModel:
        torch.manual_seed(0)
        return TransformerModel(cfg)

    def scst(fresh_model, settings: harness.Settings) -> dict:
        return {f"scst/{precision}": {"skipped": "time budget spent"} if settings.out_of_time()
                else scst_iteration(fresh_model(), scst_batch, 5, precision, settings)
                for precision in harness.PRECISIONS}

    case = harness.ModelCase(
        name="spatial_pe transformer", build=build,
        make_optimizer=lambda model: get_std_opt(model, factor=1, warmup=10000),
        train_batch=xe_batch, train_samples=xe_images * 5,
        train_loss=lambda model, data: xe_loss(model, crit, data, settings.device),
        infer_batch=infer_batch, infer_items=infer_images,
        infer=lambda model, data: harness.token_rows(greedy_ids(model, data)),
        agreement=harness.caption_agreement, fit_batch=infer_batch, fit_steps=60 if args.tiny else 150, fit_lr=2e-3,
        inference_compile_targets=lambda model: [model.model.encoder, model.model.decoder, model.model.generator],
        describe={"size": "tiny" if args.tiny else "paper", "d_model": cfg.input_encoding_size,
                  "layers": cfg.num_layers, "vocab": cfg.vocab_size, "boxes": boxes,
                  "decoding": f"greedy, {cfg.seq_length} words"})
    result = harness.check_model(case, settings, extras=scst)
    harness.write_result("spatial_captioning", [result], settings, args.out)


if __name__ == "__main__":
    main()
