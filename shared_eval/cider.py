"""CIDEr-D (coco-caption's "CIDEr") with corpus or cached document frequencies, vectorised.

The arithmetic follows coco-caption operation by operation: same n-gram order, the scalar ``np.log`` it
calls, C ``pow`` for squares and the length penalty (``np.float_power``; numpy's SIMD ``x ** 2`` differs in
the last bit), and left-to-right sums (``sequential_sum``) where it accumulates in Python. Per-item and
corpus scores are therefore bit-identical to pycocoevalcap's ``Cider``, and to ruotianluo/cider's ``CiderD``
with a cached df.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .bleu import _check
from .ngrams import Batch, Ngram, ragged_arange, sequential_sum, unique_sorted

_N = 4
_SIGMA = 6.0


def _exact_log_max1(df: np.ndarray) -> np.ndarray:
    """``np.log(max(1.0, df))`` evaluated as coco-caption does: one scalar call per distinct value."""
    if len(df) == 0:
        return np.zeros(0)
    uniq, inv = np.unique(df, return_inverse=True)
    logs = np.array([np.log(max(1.0, float(x))) for x in uniq], dtype=np.float64)
    return logs[inv]


def _corpus_df(batch: Batch) -> list[np.ndarray]:
    """Per order, the df of each entry: number of items whose references contain the n-gram."""
    out = []
    t = batch.table
    for k in range(t.n):
        ids, sent = t.ids[k], t.sent[k]
        is_ref = sent >= batch.m
        pairs = unique_sorted(batch.item_of_sent[sent[is_ref]] * t.num_ids[k] + ids[is_ref])
        df_per_id = np.bincount(pairs % t.num_ids[k], minlength=t.num_ids[k]).astype(np.float64)
        out.append(df_per_id[ids])
    return out


def _cider_scores(batch: Batch, df: list[np.ndarray], log_ref_len: float, sigma: float) -> np.ndarray:
    """coco-caption's CIDEr-D of every item of the batch, given the df of every table entry."""
    t = batch.table
    n = t.n
    pair_item, pair_ref = batch.pair_item, batch.pair_ref
    num_pairs = len(pair_item)
    blen = np.maximum(t.lengths - 1, 0)  # "length" = number of bigrams
    delta = (blen[pair_item] - blen[pair_ref]).astype(np.float64)
    uniq_d, inv_d = np.unique(delta, return_inverse=True)
    penalty = np.array([np.e ** (-(d ** 2) / (2 * sigma ** 2)) for d in uniq_d.tolist()])[inv_d]
    acc = []
    for k in range(n):
        ids, sent, start, count = t.ids[k], t.sent[k], t.start[k], t.count[k]
        w = t.tf[k].astype(np.float64) * (log_ref_len - _exact_log_max1(df[k]))
        norm = np.sqrt(sequential_sum(np.float_power(w, 2.0), start, count))
        key = sent * t.num_ids[k] + ids
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        hyp_len = count[pair_item]
        elem = ragged_arange(start[pair_item], hyp_len)  # the hypothesis entries, pair by pair
        elem_pair = np.repeat(np.arange(num_pairs, dtype=np.int64), hyp_len)
        query = pair_ref[elem_pair] * t.num_ids[k] + ids[elem]
        if len(sorted_key):
            loc = np.minimum(np.searchsorted(sorted_key, query), len(sorted_key) - 1)
            w_ref = np.where(sorted_key[loc] == query, w[order[loc]], 0.0)
        else:
            w_ref = np.zeros(len(query))
        vals = np.minimum(w[elem], w_ref) * w_ref
        v = sequential_sum(vals, np.concatenate([[0], np.cumsum(hyp_len)[:-1]]).astype(np.int64), hyp_len)
        nh, nr = norm[pair_item], norm[pair_ref]
        nz = (nh != 0) & (nr != 0)
        v[nz] = v[nz] / (nh[nz] * nr[nz])
        v = v * penalty
        acc.append(sequential_sum(v, batch.pair_start, batch.nref))
    total = acc[0]
    for a in acc[1:]:
        total = total + a
    return total / n / batch.nref * 10.0  # np.mean over the n orders, / number of refs, * 10


def document_frequency(refs: Sequence[Sequence[str]], n: int = _N) -> dict[Ngram, float]:
    """Number of images whose reference set contains each n-gram (refs: tokenized captions per image)."""
    df: dict[Ngram, float] = {}
    for image_refs in refs:
        seen: set = set()
        for ref in image_refs:
            words = ref.split()
            for k in range(1, n + 1):
                seen.update(zip(*(words[i:] for i in range(k))))
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
        return self.score_batch(Batch([res[k][0] for k in keys], [gts[k] for k in keys], self._n))

    def score_batch(self, batch: Batch):
        """(mean, per-item array) of an n-gram batch built with this scorer's n."""
        if batch.table.n != self._n:
            raise ValueError(f"batch holds {batch.table.n}-grams, CIDEr needs {self._n}")
        scores = _cider_scores(batch, _corpus_df(batch), np.log(float(batch.m)), self._sigma)
        return np.mean(scores), scores

    def method(self) -> str:
        return "CIDEr"


class _DfTrie:
    """A cached df table addressed by (prefix id, word id) so that lookups are vectorised."""

    _WORD_BASE = 1 << 24

    def __init__(self, document_frequency: Mapping[Ngram, float], n: int):
        self.vocab: dict[str, int] = {}
        self.keys: list[np.ndarray] = []
        self.df: list[np.ndarray] = []
        by_order: list[dict[Ngram, float]] = [{} for _ in range(n)]
        for g, v in document_frequency.items():
            g = tuple(g)
            if 1 <= len(g) <= n:
                by_order[len(g) - 1][g] = float(v)
        for k in range(n - 1, 0, -1):  # a missing prefix gets df 0, which is what a lookup miss gives
            for g in by_order[k]:
                by_order[k - 1].setdefault(g[:-1], 0.0)
        index: dict[Ngram, int] = {}
        for k in range(n):
            grams = list(by_order[k])
            prefix = np.array([index[g[:-1]] if k else 0 for g in grams], dtype=np.int64)
            word = np.array([self.vocab.setdefault(g[-1], len(self.vocab)) for g in grams], dtype=np.int64)
            if len(self.vocab) >= self._WORD_BASE:
                raise ValueError("document_frequency has more than 2**24 distinct words")
            keys = prefix * self._WORD_BASE + word
            order = np.argsort(keys)
            self.keys.append(keys[order])
            self.df.append(np.array([by_order[k][grams[i]] for i in order.tolist()], dtype=np.float64))
            index = {grams[i]: rank for rank, i in enumerate(order.tolist())}

    def lookup(self, batch: Batch) -> list[np.ndarray]:
        """Per order, the cached df of each table entry (0 for n-grams the table does not know)."""
        t = batch.table
        words = list(batch.vocab)
        to_trie = np.array([self.vocab.get(w, -1) for w in words], dtype=np.int64)
        tok = to_trie[t.tokens] if len(t.tokens) else np.zeros(0, np.int64)
        out = []
        prev = None
        for k in range(t.n):
            valid = t.position_ids[k] >= 0
            node = np.full(len(tok), -1, dtype=np.int64)
            pos = np.nonzero(valid)[0]
            word = tok[pos + k]
            parent = np.zeros(len(pos), dtype=np.int64) if k == 0 else prev[pos]
            ok = (word >= 0) & (parent >= 0)
            q = parent[ok] * self._WORD_BASE + word[ok]
            keys = self.keys[k]
            if len(keys) and len(q):
                loc = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
                hit = keys[loc] == q
                found = np.full(len(q), -1, dtype=np.int64)
                found[hit] = loc[hit]
                node[pos[ok]] = found
            prev = node
            entry_node = node[t.pos[k]]
            df = np.zeros(len(entry_node))
            known = entry_node >= 0
            df[known] = self.df[k][entry_node[known]]
            out.append(df)
        return out


class CiderD:
    """CIDEr-D with document frequencies computed once (self-critical training rewards).

    ``document_frequency`` maps n-gram tuples to the number of images whose references contain them and
    ``ref_len`` is the number of images (its log replaces log N), as in self-critical.pytorch's pickles.
    The table is indexed once; each ``score`` call only counts the n-grams of its own batch.
    """

    def __init__(self, document_frequency: Mapping[Ngram, float], ref_len: float, n: int = _N,
                 sigma: float = _SIGMA):
        if ref_len <= 0:
            raise ValueError(f"ref_len must be the (positive) number of reference images, got {ref_len}")
        self.ref_len = float(ref_len)
        self.n = n
        self.sigma = sigma
        self._log_ref_len = np.log(float(ref_len))
        self._trie = _DfTrie(document_frequency, n)

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
        first = next(iter(df), None)
        if first and isinstance(first[0], bytes):
            df = {tuple(w.decode() for w in g): v for g, v in df.items()}
        return cls(df, float(ref_len), **kwargs)

    def score(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        """One CIDEr-D per candidate against its own reference list (tokenized strings)."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
        for i, refs in enumerate(references):
            if not refs:
                raise ValueError(f"candidate {i} has no references")
        if not candidates:
            return np.zeros(0)
        batch = Batch(candidates, references, self.n, share_refs=True)
        return _cider_scores(batch, self._trie.lookup(batch), self._log_ref_len, self.sigma)

    def compute_score(self, gts: Mapping, res: Mapping | Sequence[Mapping]):
        """(mean, per-item array) for pycocoevalcap's ``gts {key: [refs]}``, ``res {key: [caption]}``, or for
        ruotianluo/cider's ``res [{"image_id": key, "caption": [caption]}, ...]`` (scores in list order; several
        entries may share an image, as sampled captions in self-critical training do)."""
        if isinstance(res, Mapping):
            _check(gts, res)
            keys = list(gts)
            scores = self.score([res[k][0] for k in keys], [gts[k] for k in keys])
        else:
            try:
                cands = [r["caption"][0] if isinstance(r["caption"], list) else r["caption"] for r in res]
                refs = [gts[r["image_id"]] for r in res]
            except (KeyError, TypeError, IndexError) as e:
                raise ValueError(f"res must be {{key: [caption]}} or [{{'image_id': key, 'caption': [caption]}}] "
                                 f"with every image_id in gts ({e!r})") from None
            scores = self.score(cands, refs)
        return np.mean(scores), scores

    def method(self) -> str:
        return "CIDEr-D"
