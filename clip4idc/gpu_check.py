"""CLIP4IDC's part of `make gpu-check` (tools/gpu_check.py runs it): the stage-2 captioner at ViT-B/32 size
(decoder-base, 224 x 224 image pairs, 32 words) with seeded random weights, trained with the original's BertAdam
groups (engine.prep_optimizer); greedy captions (CLIP4IDC.greedy_decode) for the bf16 comparison.

    python gpu_check.py --out ../runs/bench/gpu_check/clip4idc.json [--device cuda] [--tiny]
"""
from __future__ import annotations


import torch

from engine import prep_optimizer
from modules.modeling import CLIP4IDC
from modules.module_clip import ClipConfig
from modules.module_decoder import DecoderConfig
from tools import gpu_check_harness as harness

SOT, EOT = 49406, 49407
# the Makefile's toy sizes (decoder-tiny)
TINY_CLIP = ClipConfig(embed_dim=64, image_resolution=64, vision_layers=4, vision_width=64, vision_patch_size=16,
                       transformer_width=64, transformer_heads=4, transformer_layers=2)


def pair_batch(n: int, resolution: int, words: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Image pairs, a text-tower query ending in <eot>, and a caption as decoder input (<sot> first) and target."""
    g = torch.Generator().manual_seed(5)
    caption = torch.randint(1, 49000, (n, words), generator=g)
    query = caption.clone()
    query[:, -1] = EOT
    decoder_in = torch.cat([torch.full((n, 1), SOT), caption[:, :-1]], 1)
    return {k: v.to(device) for k, v in {
        "query": query.unsqueeze(1), "bef": torch.randn(n, 1, 3, resolution, resolution, generator=g),
        "aft": torch.randn(n, 1, 3, resolution, resolution, generator=g), "decoder_in": decoder_in,
        "decoder_mask": torch.ones(n, words, dtype=torch.long), "target": caption}.items()}


def caption_loss(model: CLIP4IDC, b: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(b["query"], b["bef"], b["aft"], b["decoder_in"], b["decoder_mask"], b["target"])


def main() -> None:
    args, settings = harness.parse_settings(__doc__.split("\n\n")[0], train_steps=10, infer_iters=3,
                                            budget_s=55)
    clip_cfg = TINY_CLIP if args.tiny else ClipConfig()
    decoder = "decoder-tiny" if args.tiny else "decoder-base"
    intra_layers = 2 if args.tiny else 9
    words = 8 if args.tiny else 32
    train_n, infer_n = (4, 4) if args.tiny else (32, 32)
    train_batch = pair_batch(train_n, clip_cfg.image_resolution, words, settings.device)
    infer_batch = pair_batch(infer_n, clip_cfg.image_resolution, words, settings.device)

    def build() -> CLIP4IDC:
        torch.manual_seed(0)
        return CLIP4IDC(clip_cfg, "caption", DecoderConfig.from_model_dir(decoder), intra_layers=intra_layers)

    case = harness.ModelCase(
        name="clip4idc caption", build=build,
        make_optimizer=lambda model: prep_optimizer(model, "caption", 1e-4, 1e-3, 0.1, 1000),
        train_batch=train_batch, train_samples=train_n, train_loss=caption_loss,
        infer_batch=infer_batch, infer_items=infer_n,
        infer=lambda model, b: harness.token_rows(model.greedy_decode(b["bef"], b["aft"], SOT, words)),
        agreement=harness.caption_agreement, fit_batch=infer_batch, fit_steps=60 if args.tiny else 100, fit_lr=2e-3,
        inference_compile_targets=lambda model: [model.clip.visual, model.decoder],
        describe={"size": "tiny" if args.tiny else "paper", "vision": f"ViT {clip_cfg.vision_layers} layers, width "
                  f"{clip_cfg.vision_width}, patch {clip_cfg.vision_patch_size}", "decoder": decoder,
                  "image": clip_cfg.image_resolution, "decoding": f"greedy, {words} words"})
    result = harness.check_model(case, settings)
    harness.write_result("clip4idc", [result], settings, args.out)


if __name__ == "__main__":
    main()
