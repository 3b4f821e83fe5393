"""Interim stand-in for shared_eval.captions (same interface) until that package is merged; see scorers.py."""
from __future__ import annotations

import math
import pickle
from collections import Counter
from typing import Mapping

import numpy as np


def _ngrams(sentence: str, n: int = 4) -> Counter:
    words = sentence.split()
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


class CiderD:
    """ruotianluo/cider's CIDEr-D (n=4, sigma=6, x10) with document frequencies fixed in advance."""

    def __init__(self, document_frequency: Mapping[tuple[str, ...], float], ref_len: float, sigma: float = 6.0):
        self.df = document_frequency
        self.log_ref_len = math.log(float(ref_len))
        self.sigma = sigma

    @classmethod
    def from_pickle(cls, path: str) -> "CiderD":
        with open(path, "rb") as f:
            data = pickle.load(f)
        return cls(data["document_frequency"], data["ref_len"])

    def _vec(self, counts: Counter):
        vec = [dict() for _ in range(4)]
        norm = [0.0] * 4
        length = 0
        for gram, tf in counts.items():
            n = len(gram) - 1
            df = math.log(max(1.0, self.df.get(gram, 0.0)))
            vec[n][gram] = float(tf) * (self.log_ref_len - df)
            norm[n] += vec[n][gram] ** 2
            if n == 1:  # ruotianluo's CIDEr-D counts bigrams as the length (kept for identical rewards)
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def _sim(self, hyp, ref) -> np.ndarray:
        (vh, nh, lh), (vr, nr, lr) = hyp, ref
        val = np.zeros(4)
        for n in range(4):
            for gram, v in vh[n].items():
                if gram in vr[n]:
                    val[n] += min(v, vr[n][gram]) * vr[n][gram]
            if nh[n] != 0 and nr[n] != 0:
                val[n] /= nh[n] * nr[n]
            val[n] *= math.e ** (-(float(lh - lr) ** 2) / (2 * self.sigma ** 2))
        return val

    def score(self, candidates: list[str], references: list[list[str]]) -> np.ndarray:
        out = np.zeros(len(candidates))
        for i, (cand, refs) in enumerate(zip(candidates, references)):
            hyp = self._vec(_ngrams(cand))
            total = sum(self._sim(hyp, self._vec(_ngrams(r))) for r in refs)
            out[i] = float(np.mean(total)) / len(refs) * 10.0
        return out

    def compute_score(self, gts: dict, res: dict):
        keys = list(res)
        scores = self.score([res[k][0] for k in keys], [gts[k] for k in keys])
        return float(scores.mean()), scores


def evaluate(gts: dict, res: dict, *, tokenized: bool = False, meteor: bool = True, spice: bool = False) -> dict:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if not tokenized:
        tok = PTBTokenizer()
        gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts.items()})
        res = tok.tokenize({k: [{"caption": c} for c in v] for k, v in res.items()})
    out = {}
    bleu, _ = Bleu(4).compute_score(gts, res)
    out.update({f"Bleu_{i + 1}": b for i, b in enumerate(bleu)})
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor
        out["METEOR"], _ = Meteor().compute_score(gts, res)
    out["ROUGE_L"], _ = Rouge().compute_score(gts, res)
    out["CIDEr"], _ = Cider().compute_score(gts, res)
    if spice:
        from pycocoevalcap.spice.spice import Spice
        out["SPICE"], _ = Spice().compute_score(gts, res)
    return out
