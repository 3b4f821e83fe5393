"""Property tests: random small corpora scored by us and by pycocoevalcap must agree (BLEU, ROUGE-L, CIDEr-D)."""

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pycocoevalcap.bleu.bleu import Bleu as RefBleu
from pycocoevalcap.cider.cider import Cider as RefCider
from pycocoevalcap.rouge.rouge import Rouge as RefRouge

from shared_eval.captions import Bleu, Cider, CiderD, Rouge

TOL = 1e-9
WORDS = st.sampled_from(["a", "dog", "the", "on", "red", "red", "a"])
# empty captions included; repeated n-grams are frequent with this small vocabulary
CAPTION = st.lists(WORDS, min_size=0, max_size=9).map(" ".join)
KEY = st.one_of(st.integers(0, 10_000), st.text("abcxyz", min_size=1, max_size=4))


@st.composite
def corpora(draw, min_items=1, max_items=6):
    keys = draw(st.lists(KEY, min_size=min_items, max_size=max_items, unique=True))
    gts = {k: draw(st.lists(CAPTION, min_size=1, max_size=5)) for k in keys}
    res = {k: [draw(CAPTION)] for k in keys}
    return gts, res


def _close(a, b):
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=0, atol=TOL)


@settings(max_examples=100, deadline=None)
@given(corpora())
def test_bleu(corpus):
    gts, res = corpus
    ours, ours_items = Bleu(4).compute_score(gts, res)
    ref, ref_items = RefBleu(4).compute_score(gts, res, verbose=0)
    assert _close(ours, ref) and _close(ours_items, ref_items)


@settings(max_examples=100, deadline=None)
@given(corpora())
def test_rouge(corpus):
    gts, res = corpus
    ours, ours_items = Rouge().compute_score(gts, res)
    ref, ref_items = RefRouge().compute_score(gts, res)
    assert _close(ours, ref) and _close(ours_items, ref_items)


@settings(max_examples=100, deadline=None)
@given(corpora())
def test_cider(corpus):
    gts, res = corpus
    assume(any(r.split() for refs in gts.values() for r in refs))  # pycocoevalcap crashes on an empty df
    ours, ours_items = Cider().compute_score(gts, res)
    ref, ref_items = RefCider().compute_score(gts, res)
    assert _close(ours, ref) and _close(ours_items, ref_items)
    keys = list(gts)
    cached = CiderD.from_references([gts[k] for k in keys]).score([res[k][0] for k in keys], [gts[k] for k in keys])
    assert _close(cached, ref_items)


@settings(max_examples=40, deadline=None)
@given(CAPTION, st.lists(CAPTION, min_size=1, max_size=1))
def test_one_image_corpus(hyp, refs):
    gts, res = {0: refs}, {0: [hyp]}
    assert Cider().compute_score(gts, res)[0] == 0.0  # log N = 0 with one image: all weights vanish
    assert _close(Bleu(4).compute_score(gts, res)[0], RefBleu(4).compute_score(gts, res, verbose=0)[0])
    assert _close(Rouge().compute_score(gts, res)[0], RefRouge().compute_score(gts, res)[0])


def test_closest_length_ties_go_to_the_shorter_reference():
    # hypothesis of 3 words, references of 2 and 4 words: both at distance 1, BLEU uses 2
    gts, res = {1: ["a b", "a b c d"]}, {1: ["a b c"]}
    (b1, _, _, _), _ = Bleu(4).compute_score(gts, res)
    assert b1 == (3 + 1e-15) / (3 + 1e-9)  # no brevity penalty since 3 >= 2
    assert b1 == RefBleu(4).compute_score(gts, res, verbose=0)[0][0]
    gts2 = {1: ["a b c d", "a b"]}  # order of the references does not matter
    assert Bleu(4).compute_score(gts2, res)[0][0] == b1


def test_repeated_ngrams_are_clipped():
    gts, res = {0: ["a a"], 1: ["b"]}, {0: ["a a a a"], 1: ["c"]}
    _, items = Bleu(4).compute_score(gts, res)
    assert items[0][0] == (2 + 1e-15) / (4 + 1e-9)  # 2 of the 4 unigrams are matched
    assert _close(items, RefBleu(4).compute_score(gts, res, verbose=0)[1])


def test_empty_hypothesis_scores_zero():
    gts, res = {0: ["a dog"], 1: ["a cat"]}, {0: [""], 1: ["a cat"]}
    _, bleu_items = Bleu(4).compute_score(gts, res)
    assert bleu_items[0][0] == 0.0  # the brevity term underflows
    assert Rouge().compute_score(gts, res)[1][0] == 0.0
    assert Cider().compute_score(gts, res)[1][0] == 0.0


def test_zero_four_gram_matches_are_not_clamped():
    gts, res = {0: ["a b c d e"], 1: ["x y"]}, {0: ["a b c e d"], 1: ["x y"]}
    (b1, b2, b3, b4), _ = Bleu(4).compute_score(gts, res)
    assert 0 < b4 < 1 and not math.isnan(b4)
    assert _close([b1, b2, b3, b4], RefBleu(4).compute_score(gts, res, verbose=0)[0])
