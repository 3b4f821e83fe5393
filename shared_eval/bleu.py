"""BLEU-1..4 exactly as coco-caption computes it (option "closest", corpus from summed counts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .ngrams import Batch

_SMALL = 1e-9
_TINY = 1e-15  # so that a zero guess still gives 0


def _check(gts: Mapping, res: Mapping) -> None:
    if gts.keys() != res.keys():
        raise ValueError("gts and res must have the same keys "
                         f"({len(set(gts) - set(res))} only in gts, {len(set(res) - set(gts))} only in res)")
    for k in gts:
        hyp, refs = res[k], gts[k]
        if not isinstance(hyp, list) or len(hyp) != 1:
            raise ValueError(f"res[{k!r}] must be a list with exactly one caption, got {hyp!r}")
        if not isinstance(refs, list) or len(refs) < 1:
            raise ValueError(f"gts[{k!r}] must be a non-empty list of captions, got {refs!r}")


def bleu_stats(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per item: test length, closest reference length, guess counts (items, n), clipped correct counts (items, n).

    Integer statistics, so counting order does not matter; computed for all items of the batch at once.
    """
    t, m, n = batch.table, batch.m, batch.table.n
    testlen = t.lengths[:m]
    # closest reference length, ties to the shorter one
    ref_len = t.lengths[batch.pair_ref]
    key = np.abs(ref_len - testlen[batch.pair_item]) * (1 << 32) + ref_len
    reflen = np.minimum.reduceat(key, batch.pair_start) % (1 << 32) if len(key) else np.zeros(m, np.int64)
    guess = np.maximum(testlen[:, None] - np.arange(n)[None, :], 0)
    correct = np.zeros((m, n), dtype=np.int64)
    for k in range(n):
        ids, sent, tf = t.ids[k], t.sent[k], t.tf[k]
        is_ref = sent >= m
        rkey = batch.item_of_sent[sent[is_ref]] * t.num_ids[k] + ids[is_ref]
        uniq, inv = np.unique(rkey, return_inverse=True)
        maxcount = np.zeros(len(uniq), dtype=np.int64)
        np.maximum.at(maxcount, inv, tf[is_ref])
        hkey = sent[~is_ref] * t.num_ids[k] + ids[~is_ref]
        if len(uniq):
            loc = np.minimum(np.searchsorted(uniq, hkey), len(uniq) - 1)
            ref_max = np.where(uniq[loc] == hkey, maxcount[loc], 0)
        else:
            ref_max = np.zeros(len(hkey), dtype=np.int64)
        clipped = np.minimum(tf[~is_ref], ref_max)
        correct[:, k] = np.bincount(sent[~is_ref], weights=clipped, minlength=m).astype(np.int64)
    return testlen, reflen, guess, correct


def bleu_from_stats(testlen: float, reflen: float, guess: Sequence[float], correct: Sequence[float]) -> list[float]:
    """BLEU-1..n from (summed) statistics, with coco-caption's smoothing constants and brevity penalty."""
    scores = []
    p = 1.0
    for k in range(len(guess)):
        p *= (float(correct[k]) + _TINY) / (float(guess[k]) + _SMALL)
        scores.append(p ** (1.0 / (k + 1)))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    if ratio < 1:
        bp = math.exp(1 - 1 / ratio)
        scores = [s * bp for s in scores]
    return scores


class Bleu:
    """pycocoevalcap-compatible BLEU: ``compute_score(gts, res) -> ([B1..Bn], [[per item] x n])``."""

    def __init__(self, n: int = 4):
        self._n = n

    def compute_score(self, gts: Mapping, res: Mapping, verbose: int = 0):
        _check(gts, res)
        keys = list(gts)
        return self.score_batch(Batch([res[k][0] for k in keys], [gts[k] for k in keys], self._n), verbose)

    def score_batch(self, batch: Batch, verbose: int = 0):
        """(corpus [B1..Bn], per-item lists) of an n-gram batch built with this scorer's n."""
        if batch.table.n != self._n:
            raise ValueError(f"batch holds {batch.table.n}-grams, BLEU needs {self._n}")
        n = self._n
        testlen, reflen, guess, correct = bleu_stats(batch)
        per = [[] for _ in range(n)]
        for i in range(batch.m):
            for k, s in enumerate(bleu_from_stats(int(testlen[i]), int(reflen[i]), guess[i].tolist(),
                                                  correct[i].tolist())):
                per[k].append(s)
        totals = (int(testlen.sum()), int(reflen.sum()), guess.sum(0).tolist(), correct.sum(0).tolist())
        if verbose:
            print({"testlen": totals[0], "reflen": totals[1], "guess": totals[2], "correct": totals[3]})
        return bleu_from_stats(*totals), per

    def method(self) -> str:
        return "Bleu"
