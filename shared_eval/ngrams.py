"""N-gram counting shared by BLEU and CIDEr-D."""

from __future__ import annotations

from collections import Counter

Ngram = tuple[str, ...]


def ngram_counts(words: list[str], n: int = 4) -> list[dict[Ngram, int]]:
    """Counts of the 1..n-grams of ``words``, one dict per order, keys in first-occurrence order.

    The key order equals the insertion order of coco-caption's ``precook`` within each order, which fixes
    the floating-point summation order of CIDEr-D's norms and similarities.
    """
    out: list[dict[Ngram, int]] = []
    for k in range(1, n + 1):
        if k == 1:
            out.append(Counter(zip(words)))
        else:
            out.append(Counter(zip(*(words[i:] for i in range(k)))))
    return out
