"""The demo's baseline search (constant_caption.py) on a hand-made case, checked against the demo's scorer."""
import pytest

from constant_caption import best_constant_caption, constant_caption_cider

REFERENCES = {
    1: ["A dog runs on the grass.", "a dog runs"],
    2: ["A cat sleeps on the sofa.", "a cat sleeps"],
    3: ["A dog runs in the park.", "the dog runs"],
}
# "a dog runs" fits two images of three; its two raw spellings tokenize alike, so the first one is returned.
CANDIDATES = ["A cat sleeps.", "A dog runs.", "a dog runs", "a bird flies", "a dog sleeps on the grass",
              "a dog runs on the sofa"]


@pytest.mark.parametrize("chunk", [1, 2, 100])
def test_best_constant_caption_is_the_brute_force_best(chunk):
    caption, score = best_constant_caption(CANDIDATES, REFERENCES, chunk=chunk)
    by_scorer = {c: constant_caption_cider(c, REFERENCES) for c in CANDIDATES}
    assert caption == "A dog runs."
    assert score == pytest.approx(by_scorer["A dog runs."], rel=1e-12, abs=0)  # measured gap: 0 (same float64 sums)
    assert all(by_scorer[c] < score for c in CANDIDATES if c.lower().rstrip(".") != "a dog runs")
    assert by_scorer["a bird flies"] == 0.0


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError, match="at least one candidate"):
        best_constant_caption([], REFERENCES)
