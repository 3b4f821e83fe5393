"""CIDEr-D (coco-caption's "CIDEr") with corpus or cached document frequencies.

The arithmetic follows coco-caption operation by operation (same n-gram order, same ``np.log`` and
``pow`` calls, same accumulation order), so per-item and corpus scores are bit-identical to
pycocoevalcap's ``Cider`` and to ruotianluo/cider's ``CiderD`` with a cached df.
"""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .bleu import _check
from .ngrams import Ngram, ngram_counts

_N = 4
_SIGMA = 6.0


class _Vec:
    """tf-idf vectors of one sentence: one dict per order, their norms and the bigram-count length."""

    __slots__ = ("vec", "norm", "length")

    def __init__(self, vec: list[dict[Ngram, float]], norm: list[float], length: int):
        self.vec = vec
        self.norm = norm
        self.length = length


class _CiderCore:
    def __init__(self, document_frequency: Mapping[Ngram, float], log_ref_len: float, n: int = _N,
                 sigma: float = _SIGMA):
        self.document_frequency = document_frequency
        self.log_ref_len = float(log_ref_len)
        self.n = n
        self.sigma = sigma
        self._log_df: dict[float, float] = {}

    def _idf(self, df: float) -> float:
        lg = self._log_df.get(df)
        if lg is None:
            # scalar np.log, as coco-caption (numpy's vectorised log can differ in the last bit)
            lg = float(np.log(max(1.0, df)))
            self._log_df[df] = lg
        return self.log_ref_len - lg

    def vectorize(self, sentence: str) -> _Vec:
        counts = ngram_counts(sentence.split(), self.n)
        df_get = self.document_frequency.get
        vec, norm = [], []
        for order in counts:
            d = {}
            s = 0.0
            for g, tf in order.items():
                w = float(tf) * self._idf(df_get(g, 0.0))
                d[g] = w
                s += w ** 2  # C pow(), as coco-caption's pow(x, 2) (differs from x * x in the last bit)
            vec.append(d)
            norm.append(math.sqrt(s))
        length = sum(counts[1].values()) if self.n > 1 else 0
        return _Vec(vec, norm, length)

    def sim(self, h: _Vec, r: _Vec) -> list[float]:
        delta = float(h.length - r.length)
        penalty = np.e ** (-(delta ** 2) / (2 * self.sigma ** 2))
        out = []
        for k in range(self.n):
            rk = r.vec[k]
            v = 0.0
            for g, wh in h.vec[k].items():
                wr = rk.get(g, 0.0)
                v += min(wh, wr) * wr
            if h.norm[k] != 0 and r.norm[k] != 0:
                v /= h.norm[k] * r.norm[k]
            out.append(v * penalty)
        return out

    def item_score(self, h: _Vec, refs: Sequence[_Vec]) -> float:
        acc = [0.0] * self.n
        for r in refs:
            for k, v in enumerate(self.sim(h, r)):
                acc[k] += v
        total = acc[0]
        for v in acc[1:]:
            total += v
        score = total / self.n  # np.mean of the n values: sequential sum, then divide
        score /= len(refs)
        return score * 10.0


def document_frequency(refs: Sequence[Sequence[str]], n: int = _N) -> dict[Ngram, float]:
    """Number of images whose reference set contains each n-gram (refs: tokenized captions per image)."""
    df: dict[Ngram, float] = {}
    for image_refs in refs:
        seen = set()
        for ref in image_refs:
            for order in ngram_counts(ref.split(), n):
                seen.update(order)
        for g in seen:
            df[g] = df.get(g, 0.0) + 1.0
    return df


class Cider:
    """pycocoevalcap-compatible CIDEr-D: df from the references of the items in the call."""

    def __init__(self, test=None, refs=None, n: int = _N, sigma: float = _SIGMA):
        self._n = n
        self._sigma = sigma

    def compute_score(self, gts: Mapping, res: Mapping):
        _check(gts, res)
        keys = list(gts)
        df = document_frequency([gts[k] for k in keys], self._n)
        core = _CiderCore(df, np.log(float(len(keys))), self._n, self._sigma)
        scores = []
        for k in keys:
            refs = [core.vectorize(r) for r in gts[k]]
            scores.append(core.item_score(core.vectorize(res[k][0]), refs))
        arr = np.array(scores)
        return np.mean(arr), arr

    def method(self) -> str:
        return "CIDEr"


class CiderD:
    """CIDEr-D with document frequencies computed once (self-critical training rewards).

    ``document_frequency`` maps n-gram tuples to the number of images whose references contain them and
    ``ref_len`` is the number of images (its log replaces log N). Reference vectors are cached by caption
    string, so scoring many batches against the same references never re-cooks them.
    """

    def __init__(self, document_frequency: Mapping[Ngram, float], ref_len: float, n: int = _N,
                 sigma: float = _SIGMA, cache_size: int = 200_000):
        if ref_len <= 0:
            raise ValueError(f"ref_len must be the (positive) number of reference images, got {ref_len}")
        self.document_frequency = document_frequency
        self.ref_len = float(ref_len)
        self._core = _CiderCore(document_frequency, np.log(float(ref_len)), n, sigma)
        self._cache: OrderedDict[str, _Vec] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_references(cls, refs: Sequence[Sequence[str]], **kwargs) -> "CiderD":
        """df from tokenized training references, one list of captions per image."""
        return cls(document_frequency(refs, kwargs.get("n", _N)), len(refs), **kwargs)

    @classmethod
    def from_pickle(cls, path: str | Path, **kwargs) -> "CiderD":
        """Load self-critical.pytorch's ``{'document_frequency': ..., 'ref_len': ...}`` pickle."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CIDEr-D document-frequency pickle not found: {path} "
                                    "(self-critical.pytorch writes it with scripts/prepro_ngrams.py)")
        with path.open("rb") as f:
            try:
                data = pickle.load(f)
            except UnicodeDecodeError:  # written by Python 2
                f.seek(0)
                data = pickle.load(f, encoding="latin1")
        try:
            df, ref_len = data["document_frequency"], data["ref_len"]
        except (KeyError, TypeError):
            raise ValueError(f"{path}: expected a dict with keys 'document_frequency' and 'ref_len'") from None
        if df and isinstance(next(iter(df)), tuple) and next(iter(df)) and isinstance(next(iter(df))[0], bytes):
            df = {tuple(w.decode() for w in g): v for g, v in df.items()}
        return cls(dict(df), float(ref_len), **kwargs)

    def _ref_vec(self, ref: str) -> _Vec:
        v = self._cache.get(ref)
        if v is None:
            v = self._core.vectorize(ref)
            self._cache[ref] = v
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return v

    def score(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        """One CIDEr-D per candidate against its own reference list (tokenized strings)."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
        core = self._core
        out = np.empty(len(candidates), dtype=np.float64)
        for i, (cand, refs) in enumerate(zip(candidates, references)):
            if not refs:
                raise ValueError(f"candidate {i} has no references")
            out[i] = core.item_score(core.vectorize(cand), [self._ref_vec(r) for r in refs])
        return out

    def compute_score(self, gts: Mapping, res: Mapping):
        """pycocoevalcap-style: ``gts {key: [refs]}``, ``res {key: [caption]}`` -> (mean, per-item array)."""
        _check(gts, res)
        keys = list(gts)
        scores = self.score([res[k][0] for k in keys], [gts[k] for k in keys])
        return np.mean(scores), scores

    def method(self) -> str:
        return "CIDEr-D"
