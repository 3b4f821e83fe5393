"""ROUGE-L exactly as coco-caption computes it (beta 1.2, P and R maximised separately over references)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .bleu import _check


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (bit-parallel algorithm on Python integers)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        m = masks.get(tok)
        if m is None:
            continue
        u = v & m
        v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def rouge_l(candidate: str, refs: Sequence[str], beta: float = 1.2) -> float:
    """Sentence ROUGE-L F-score of one candidate against its references."""
    token_c = candidate.split(" ")
    prec_max = rec_max = 0.0
    first = True
    for ref in refs:
        token_r = ref.split(" ")
        lcs = lcs_length(token_r, token_c)
        prec = lcs / float(len(token_c))
        rec = lcs / float(len(token_r))
        if first:
            prec_max, rec_max, first = prec, rec, False
        else:
            prec_max = max(prec_max, prec)
            rec_max = max(rec_max, rec)
    if prec_max != 0 and rec_max != 0:
        return ((1 + beta ** 2) * prec_max * rec_max) / float(rec_max + beta ** 2 * prec_max)
    return 0.0


class Rouge:
    """pycocoevalcap-compatible ROUGE-L: ``compute_score(gts, res) -> (mean, per-item array)``."""

    def __init__(self) -> None:
        self.beta = 1.2

    def calc_score(self, candidate: list[str], refs: list[str]) -> float:
        return rouge_l(candidate[0], refs, self.beta)

    def compute_score(self, gts: Mapping, res: Mapping):
        _check(gts, res)
        scores = np.array([rouge_l(res[k][0], gts[k], self.beta) for k in gts])
        return np.mean(scores), scores

    def method(self) -> str:
        return "Rouge"
