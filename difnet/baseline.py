"""The trivial captioning baseline: one constant caption for every image.

The best constant caption is the candidate that, given to every test image, has the highest corpus CIDEr-D
against the test references, with the document frequencies of those references (what
``engine.score_captions`` uses). Candidates and references are PTB-tokenized strings.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared_eval.captions import CiderD

CANDIDATES_PER_CALL = 64  # bounds one scoring batch to 64 x (test images) pairs


def constant_caption_scores(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """Corpus CIDEr-D of each candidate when it is the caption of every image of ``references``."""
    scorer = CiderD.from_references(references)
    n_images = len(references)
    scores = np.empty(len(candidates))
    for start in range(0, len(candidates), CANDIDATES_PER_CALL):
        chunk = candidates[start:start + CANDIDATES_PER_CALL]
        per_pair = scorer.score([c for c in chunk for _ in range(n_images)], [*references] * len(chunk))
        scores[start:start + len(chunk)] = per_pair.reshape(len(chunk), n_images).mean(axis=1)
    return scores


def best_constant_caption(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[str, float]:
    """(caption, its corpus CIDEr-D); the first of the best on ties. Duplicate candidates are scored once."""
    unique = list(dict.fromkeys(candidates))
    if not unique or not references:
        raise ValueError("best_constant_caption needs at least one candidate and one reference list")
    scores = constant_caption_scores(unique, references)
    best = int(np.argmax(scores))
    return unique[best], float(scores[best])
