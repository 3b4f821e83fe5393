"""BLEU-1..4 exactly as coco-caption computes it (option "closest", corpus from summed counts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .ngrams import ngram_counts

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


def bleu_stats(hyp: str, refs: Sequence[str], n: int = 4) -> tuple[int, int, list[int], list[int]]:
    """(test length, closest reference length, guess counts, correct counts) of one item."""
    words = hyp.split()
    testlen = len(words)
    counts = ngram_counts(words, n)
    maxcounts: list[dict] = [{} for _ in range(n)]
    reflens = []
    for ref in refs:
        rw = ref.split()
        reflens.append(len(rw))
        for k, rc in enumerate(ngram_counts(rw, n)):
            mk = maxcounts[k]
            for g, c in rc.items():
                if c > mk.get(g, 0):
                    mk[g] = c
    # closest reference length, ties to the shorter one
    reflen = min((abs(r - testlen), r) for r in reflens)[1]
    guess = [max(0, testlen - k) for k in range(n)]
    correct = []
    for k in range(n):
        mk = maxcounts[k]
        correct.append(sum(min(c, mk.get(g, 0)) for g, c in counts[k].items()))
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
        n = self._n
        per = [[] for _ in range(n)]
        tot_test = tot_ref = 0
        tot_guess = [0] * n
        tot_correct = [0] * n
        for key in gts:
            testlen, reflen, guess, correct = bleu_stats(res[key][0], gts[key], n)
            tot_test += testlen
            tot_ref += reflen
            for k in range(n):
                tot_guess[k] += guess[k]
                tot_correct[k] += correct[k]
            for k, s in enumerate(bleu_from_stats(testlen, reflen, guess, correct)):
                per[k].append(s)
        corpus = bleu_from_stats(tot_test, tot_ref, tot_guess, tot_correct)
        if verbose:
            print({"testlen": tot_test, "reflen": tot_ref, "guess": tot_guess, "correct": tot_correct})
        return corpus, per

    def method(self) -> str:
        return "Bleu"
