"""N-gram counting for BLEU and CIDEr-D, vectorised over a whole corpus.

``NgramTable`` turns many sentences into flat numpy arrays: per order k, one entry per distinct k-gram of
each sentence, in coco-caption's ``precook`` insertion order (sentence by sentence, first occurrence
first) with its count. Keeping that order lets the float sums of CIDEr-D be done in exactly the same
sequence as coco-caption (``sequential_sum``), so results stay bit-identical.
"""

from __future__ import annotations

from itertools import chain
from collections.abc import Sequence

import numpy as np

Ngram = tuple[str, ...]


def word_ids(sentences: Sequence[str], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Word ids of all sentences concatenated (``str.split()`` tokens; new words are added to ``vocab``)."""
    split = [s.split() for s in sentences]
    lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    words = list(chain.from_iterable(split))
    for w in dict.fromkeys(words):  # new words in first-occurrence order
        if w not in vocab:
            vocab[w] = len(vocab)
    ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
    return ids, lengths


def unique_sorted(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based; faster here than numpy's hash-based ``np.unique``)."""
    if len(x) == 0:
        return x
    s = np.sort(x)
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for each (s, l)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    nz = lengths > 0
    s, ln = starts[nz], lengths[nz]
    steps = np.ones(total, dtype=np.int64)
    heads = np.concatenate([[0], np.cumsum(ln)[:-1]])
    steps[0] = s[0]
    steps[heads[1:]] = s[1:] - (s[:-1] + ln[:-1] - 1)
    return np.cumsum(steps)


def sequential_sum(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sum of each segment ``values[s:s + l]`` added left to right from 0.0, as a Python loop would.

    numpy's own reductions use pairwise summation, which rounds differently.
    """
    out = np.zeros(len(starts), dtype=np.float64)
    if len(starts) == 0:
        return out
    order = np.argsort(-lengths, kind="stable")
    s_sorted, l_sorted = starts[order], lengths[order]
    acc = np.zeros(len(starts), dtype=np.float64)
    longest = int(l_sorted[0]) if len(l_sorted) else 0
    # number of segments longer than j, for each j (segments sorted by decreasing length)
    counts = np.searchsorted(-l_sorted, -np.arange(longest), side="left")
    for j in range(longest):
        c = int(counts[j])
        acc[:c] += values[s_sorted[:c] + j]
    out[order] = acc
    return out


class NgramTable:
    """Distinct n-grams of each sentence with their counts, order by order.

    For order k (index k - 1): ``ids[k]`` dense n-gram ids (equal ids = equal n-grams within this table),
    ``sent[k]`` the sentence of each entry, ``tf[k]`` its count, ``pos[k]`` the position of its first
    occurrence in the flat word array, and per sentence ``start[k]``/``count[k]`` its run of entries.
    """

    def __init__(self, tokens: np.ndarray, lengths: np.ndarray, vocab_size: int, n: int = 4):
        self.n = n
        self.lengths = lengths
        self.tokens = tokens
        num = len(lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        sent_of = np.repeat(np.arange(num, dtype=np.int64), lengths)
        pos_in = np.arange(len(tokens), dtype=np.int64) - offsets[sent_of] if len(tokens) else np.zeros(0, np.int64)
        self.ids, self.sent, self.tf, self.pos, self.start, self.count, self.num_ids = [], [], [], [], [], [], []
        self.position_ids: list[np.ndarray] = []  # per order: dense id of the k-gram starting at each position
        prev_full = None
        base = max(vocab_size, 1)  # word ids are < base, so (prefix id, next word) pairs combine uniquely
        for k in range(1, n + 1):
            valid = np.nonzero(pos_in + k <= lengths[sent_of])[0] if len(tokens) else np.zeros(0, np.int64)
            if k == 1:
                dense = tokens[valid]
                num_ids = base
            else:
                comb = prev_full[valid] * base + tokens[valid + k - 1]
                uniq, dense = np.unique(comb, return_inverse=True)
                dense = dense.astype(np.int64)
                num_ids = len(uniq)
            full = np.full(len(tokens), -1, dtype=np.int64)
            full[valid] = dense
            self.position_ids.append(full)
            prev_full = full
            s = sent_of[valid]
            key = s * num_ids + dense
            _, first, counts = np.unique(key, return_index=True, return_counts=True)
            order = np.argsort(first, kind="stable")
            first, counts = first[order], counts[order]
            e_sent = s[first]
            self.ids.append(dense[first])
            self.sent.append(e_sent)
            self.tf.append(counts.astype(np.int64))
            self.pos.append(valid[first])
            cnt = np.bincount(e_sent, minlength=num).astype(np.int64)
            self.count.append(cnt)
            self.start.append(np.concatenate([[0], np.cumsum(cnt)[:-1]]).astype(np.int64))
            self.num_ids.append(num_ids)


class Batch:
    """Hypotheses and their references as one n-gram table, with the (item, reference) pairs.

    Sentence order in the table: the hypotheses, then the reference lists. With ``share_refs`` identical
    reference lists (several sampled captions of one image, as in self-critical training) are stored
    once; ``item_of_sent`` is then unavailable (document frequencies must come from elsewhere).
    """

    def __init__(self, hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int, share_refs: bool = False):
        self.m = len(hyps)
        self.nref = np.array([len(r) for r in refs], dtype=np.int64)
        if share_refs:
            group_of: dict[tuple[str, ...], int] = {}
            item_group = np.array([group_of.setdefault(tuple(r), len(group_of)) for r in refs], dtype=np.int64)
            groups = list(group_of)
        else:
            item_group = np.arange(self.m, dtype=np.int64)
            groups = refs
        sentences = list(hyps)
        for r in groups:
            sentences += r
        self.vocab: dict[str, int] = {}
        tokens, lengths = word_ids(sentences, self.vocab)
        self.table = NgramTable(tokens, lengths, len(self.vocab), n)
        group_size = np.array([len(r) for r in groups], dtype=np.int64)
        group_first = self.m + np.concatenate([[0], np.cumsum(group_size)[:-1]]).astype(np.int64)
        self.pair_start = np.concatenate([[0], np.cumsum(self.nref)[:-1]]).astype(np.int64)
        self.pair_item = np.repeat(np.arange(self.m, dtype=np.int64), self.nref)
        within = np.arange(len(self.pair_item), dtype=np.int64) - self.pair_start[self.pair_item]
        self.pair_ref = group_first[item_group[self.pair_item]] + within
        self.item_of_sent = None if share_refs else np.concatenate([np.arange(self.m, dtype=np.int64),
                                                                     self.pair_item])
