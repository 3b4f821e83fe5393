import numpy as np
import pytest

import baseline
from shared_eval.captions import evaluate

REFS = [["a red circle on grass", "a red circle"],
        ["a blue square on grass", "a blue square"],
        ["a red square on snow", "a red square"]]
CANDIDATES = ["a blue square on snow", "a red square on grass", "zebra", "a red circle on grass", "a red square on grass"]


def corpus_cider_of_constant(caption: str) -> float:
    """The evaluation's own path (coco-caption Cider, df from these references) for one constant caption."""
    gts = {i: refs for i, refs in enumerate(REFS)}
    return evaluate(gts, {i: [caption] for i in gts}, tokenized=True, meteor=False)["CIDEr"]


def test_constant_caption_scores_equal_the_corpus_cider_of_each_candidate(monkeypatch):
    monkeypatch.setattr(baseline, "CANDIDATES_PER_CALL", 2)  # three scoring calls, the last one short
    scores = baseline.constant_caption_scores(CANDIDATES, REFS)
    expected = [corpus_cider_of_constant(c) for c in CANDIDATES]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)  # float64, measured gap 0
    assert scores[2] == 0.0  # no n-gram in common with any reference


def test_best_constant_caption_is_the_argmax_over_the_candidates():
    caption, value = baseline.best_constant_caption(CANDIDATES, REFS)
    # a caption equal to one image's reference outscores those that share words with two images
    assert caption == "a red circle on grass"
    assert value == pytest.approx(max(corpus_cider_of_constant(c) for c in CANDIDATES), abs=1e-12)
    assert value > 2.7  # measured 2.809; the runner-up "a red square on grass" scores 2.624


def test_best_constant_caption_needs_candidates():
    with pytest.raises(ValueError, match="at least one candidate"):
        baseline.best_constant_caption([], REFS)
