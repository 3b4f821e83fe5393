"""The demo's trivial baseline: the best constant caption, scored as the demo scores the model.

Every candidate is given to every test image and scored with coco-caption's CIDEr (document frequencies from the
test references, as ``eval_utils.language_eval`` computes them); the best candidate's score is what a captioner
that ignores its image can reach at most among the candidates.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from shared_eval.captions import evaluate_with_images
from shared_eval.cider import CiderD
from shared_eval.ptb import PTBTokenizer


def constant_caption_cider(caption: str, references: Mapping[int, Sequence[str]]) -> float:
    """CIDEr of ``caption`` given to every image of ``references`` (raw captions), by the demo's own scorer."""
    overall, _ = evaluate_with_images(references, {k: [caption] for k in references}, meteor=False)
    return overall["CIDEr"]


def best_constant_caption(candidates: Sequence[str], references: Mapping[int, Sequence[str]],
                          chunk: int = 100) -> tuple[str, float]:
    """(raw text, CIDEr) of the candidate scoring highest when given to every image of ``references``.

    Candidates with the same PTB tokenization score the same and are scored once; ties go to the first candidate.
    ``CiderD.from_references`` on the test references holds the df and log(number of images) that coco-caption's
    CIDEr computes from the same corpus, so its per-image scores are the demo scorer's; chunks bound the memory.
    """
    if not candidates or not references:
        raise ValueError("best_constant_caption needs at least one candidate and one reference image")
    tokenizer = PTBTokenizer()
    refs = list(tokenizer.tokenize(dict(references)).values())
    raw_of: dict[str, str] = {}
    for raw, tokens in zip(candidates, tokenizer.tokenize({0: list(candidates)})[0]):
        raw_of.setdefault(tokens, raw)
    unique = list(raw_of)
    scorer = CiderD.from_references(refs)
    means = []
    for start in range(0, len(unique), chunk):
        part = unique[start:start + chunk]
        per_image = scorer.score([c for c in part for _ in refs], refs * len(part))
        means.append(per_image.reshape(len(part), len(refs)).mean(axis=1))
    scores = np.concatenate(means)
    best = int(np.argmax(scores))
    return raw_of[unique[best]], float(scores[best])
