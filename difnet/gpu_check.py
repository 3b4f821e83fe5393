"""DIFNet's part of `make gpu-check` (tools/gpu_check.py runs it): the difnet_lrp captioner at the paper's size
(d=512, 3+3 layers, vocabulary 10,201, batch 50 captions of 16 tokens) with seeded random weights; greedy captions
for the bf16 comparison; one SCST iteration (beam 5, CIDEr-D reward) per precision.

    python gpu_check.py --out ../runs/bench/gpu_check/difnet.json [--device cuda] [--tiny]
"""
from __future__ import annotations


import torch

from bench import inputs
from engine import BEAM_SIZE, MAX_LEN
from models import CaptioningModel, ModelConfig, beam_search
from shared_eval.cider import CiderD
from tools import gpu_check_harness as harness

EOS = 3  # bench.inputs' token ids: <pad> 1, <bos> 2, <eos> 3
TINY = {"vocab_size": 1000, "d_model": 64, "d_ff": 256, "h": 4}


def caption_strings(tokens: torch.Tensor) -> list[str]:
    """Token ids (n, L) -> space-joined ids cut at the first <eos>, the form CIDEr-D scores here."""
    rows = []
    for row in tokens.tolist():
        words = row[:row.index(EOS)] if EOS in row else row
        rows.append(" ".join(map(str, words)))
    return rows


def scst_iteration(model: CaptioningModel, grid: torch.Tensor, seg: torch.Tensor, precision: str,
                   settings: harness.Settings) -> dict:
    """One self-critical step as engine.train_scst takes it: CIDEr-D of the 5 beams, their mean as baseline.

    The references of each image are its own float32 greedy caption and four random ones, so the reward is not
    identically zero under random weights.
    """
    model.eval()
    with torch.no_grad():
        greedy = caption_strings(beam_search(model, grid, seg, MAX_LEN, EOS, 1)[0])
    g = torch.Generator().manual_seed(1)
    refs = [[greedy[i]] + caption_strings(torch.randint(4, model.cfg.vocab_size, (4, 10), generator=g))
            for i in range(grid.shape[0])]
    scorer = CiderD.from_references(refs)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-6)
    model.train()
    with harness.Stopwatch(settings.device) as watch:
        with harness.autocast(precision, settings.device):
            outs, log_probs = beam_search(model, grid, seg, MAX_LEN, EOS, BEAM_SIZE, out_size=BEAM_SIZE)
        candidates = caption_strings(outs.view(-1, MAX_LEN))
        per_candidate_refs = [refs[i // BEAM_SIZE] for i in range(len(candidates))]
        reward = torch.from_numpy(scorer.score(candidates, per_candidate_refs)).float().to(settings.device)
        reward = reward.view(grid.shape[0], BEAM_SIZE)
        baseline = reward.mean(-1, keepdim=True)
        loss = (-log_probs.float().mean(-1) * (reward - baseline)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"seconds": round(watch.seconds, 3), "images": grid.shape[0], "beam": BEAM_SIZE,
            "reward_mean": round(float(reward.mean()), 5), "baseline_mean": round(float(baseline.mean()), 5),
            "loss": round(loss.item(), 6), "loss_finite": bool(torch.isfinite(loss))}


def main() -> None:
    args, settings = harness.parse_settings(__doc__.split("\n\n")[0], train_steps=10, infer_iters=5,
                                            budget_s=50)
    cfg = ModelConfig(mode="difnet_lrp", **(TINY if args.tiny else {}))
    train_batch, infer_batch = (8, 8) if args.tiny else (50, 50)
    grid, seg, tokens = inputs(train_batch, 16, cfg.vocab_size, settings.device)
    infer_grid, infer_seg, infer_tokens = inputs(infer_batch, 12, cfg.vocab_size, settings.device)
    nll = torch.nn.NLLLoss(ignore_index=cfg.padding_idx)

    def build() -> CaptioningModel:
        torch.manual_seed(0)
        return CaptioningModel(cfg)

    def train_loss(model: CaptioningModel, batch) -> torch.Tensor:
        out = model(*batch)
        return nll(out[:, :-1].float().reshape(-1, out.shape[-1]), batch[1][:, 1:].reshape(-1))

    def greedy(model: CaptioningModel, batch) -> list[tuple[int, ...]]:
        return harness.token_rows(beam_search(model, batch[0], batch[1], MAX_LEN, EOS, 1)[0])

    def scst(fresh_model, settings: harness.Settings) -> dict:
        return {f"scst/{precision}": {"skipped": "time budget spent"} if settings.out_of_time()
                else scst_iteration(fresh_model(), infer_grid, infer_seg, precision, settings)
                for precision in harness.PRECISIONS}

    case = harness.ModelCase(
        name="difnet_lrp", build=build,
        make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98)),
        train_batch=(grid, tokens, seg), train_samples=train_batch, train_loss=train_loss,
        infer_batch=(infer_grid, infer_seg), infer_items=infer_batch, infer=greedy,
        agreement=harness.caption_agreement, fit_batch=(infer_grid, infer_tokens, infer_seg),
        fit_steps=60 if args.tiny else 150, fit_lr=1e-3,
        inference_compile_targets=lambda model: [model.encoder, model.decoder],
        describe={"size": "tiny" if args.tiny else "paper", "d_model": cfg.d_model, "layers": f"{cfg.n_enc}+{cfg.n_dec}",
                  "vocab": cfg.vocab_size, "decoding": f"greedy, {MAX_LEN} words"})
    result = harness.check_model(case, settings, extras=scst)
    harness.write_result("difnet", [result], settings, args.out)


if __name__ == "__main__":
    main()
