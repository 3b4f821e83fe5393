"""ROUGE-L exactly as coco-caption computes it (beta 1.2, P and R maximised separately over references)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .bleu import _check


def _masks(tokens: Sequence[str]) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    return masks


def _lcs_with_masks(masks: dict[str, int], length: int, other: Sequence[str]) -> int:
    """LCS length of a sequence (given by its position masks) and ``other`` (bit-parallel, Python ints)."""
    full = (1 << length) - 1
    v = full
    get = masks.get
    for tok in other:
        m = get(tok)
        if m is not None:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return length - bin(v).count("1")


def rouge_l(candidate: str, refs: Sequence[str], beta: float = 1.2) -> float:
    """Sentence ROUGE-L F-score of one candidate against its references (coco-caption's formula)."""
    if not refs:
        raise ValueError("ROUGE-L needs at least one reference")
    token_c = candidate.split(" ")
    masks, n_c = _masks(token_c), len(token_c)
    prec_max = rec_max = -1.0
    for ref in refs:
        token_r = ref.split(" ")
        lcs = _lcs_with_masks(masks, n_c, token_r)
        prec = lcs / float(n_c)
        rec = lcs / float(len(token_r))
        if prec > prec_max:
            prec_max = prec
        if rec > rec_max:
            rec_max = rec
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
