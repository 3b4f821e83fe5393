"""Self-critical reward: CIDEr-D (and optionally BLEU-4) of sampled captions minus that of greedy captions."""
from __future__ import annotations

import os

import numpy as np
import torch

from misc.scorers import CiderD

_scorers: dict[str, CiderD] = {}


def cached_tokens_path(cached_tokens: str) -> str:
    """The original resolves --cached_tokens as data/<name>.p relative to the working directory."""
    return cached_tokens if cached_tokens.endswith(".p") and os.path.isfile(cached_tokens) \
        else os.path.join("data", cached_tokens + ".p")


def init_scorer(cached_tokens: str) -> CiderD:
    """Load the document frequencies once (coco-train-idxs.p from scripts/prepro_ngrams.py)."""
    path = cached_tokens_path(cached_tokens)
    if path not in _scorers:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"SCST needs {path} (--cached_tokens {cached_tokens}): run scripts/prepro_ngrams.py --input_json "
                "data/dataset_coco.json --dict_json data/cocotalk.json --output_pkl data/coco-train --split train")
        _scorers[path] = CiderD.from_pickle(path)
    return _scorers[path]


def array_to_str(arr) -> str:
    """Word indices up to and including the first 0 (EOS), as the original's reward strings."""
    out = []
    for w in arr:
        out.append(str(int(w)))
        if w == 0:
            break
    return " ".join(out)


def bleu4(candidates: list[str], references: list[list[str]]) -> np.ndarray:
    from pycocoevalcap.bleu.bleu import Bleu

    gts = {i: refs for i, refs in enumerate(references)}
    res = {i: [c] for i, c in enumerate(candidates)}
    _, scores = Bleu(4).compute_score(gts, res, verbose=0)
    return np.array(scores[3])


def self_critical_reward(scorer: CiderD, greedy: torch.Tensor, sampled: torch.Tensor, gts: list[np.ndarray],
                         cider_weight: float, bleu_weight: float) -> tuple[torch.Tensor, float, float]:
    """(reward (N, T) broadcast over time, mean sample score, mean greedy score)."""
    n = sampled.size(0)
    per_img = n // len(gts)
    refs = [[array_to_str(r) for r in gts[i // per_img]] for i in range(n)]
    cands = [array_to_str(s) for s in sampled.cpu().numpy()] + [array_to_str(s) for s in greedy.cpu().numpy()]
    refs = refs + refs
    scores = np.zeros(2 * n)
    if cider_weight > 0:
        scores += cider_weight * scorer.score(cands, refs)
    if bleu_weight > 0:
        scores += bleu_weight * bleu4(cands, refs)
    diff = scores[:n] - scores[n:]
    reward = np.repeat(diff[:, None], sampled.size(1), 1)
    return torch.from_numpy(reward).float().to(sampled.device), float(scores[:n].mean()), float(scores[n:].mean())
