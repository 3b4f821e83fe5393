"""BLEU, ROUGE-L and CIDEr-D against pycocoevalcap on real caption corpora."""

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu as RefBleu
from pycocoevalcap.cider.cider import Cider as RefCider
from pycocoevalcap.rouge.rouge import Rouge as RefRouge

from shared_eval.captions import Bleu, Cider, CiderD, Rouge
from shared_eval.cider import document_frequency

pytestmark = pytest.mark.parity

SETS = ["coco_demo", "abstractB0", "abstractC1", "aac1", "aac2", "spot"]
TOL = 1e-9


@pytest.mark.parametrize("name", SETS)
def test_bleu_matches_pycocoevalcap(name, tokenized_sets):
    gts, res = tokenized_sets[name]
    ours, ours_items = Bleu(4).compute_score(gts, res)
    ref, ref_items = RefBleu(4).compute_score(gts, res, verbose=0)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)
    np.testing.assert_allclose(np.array(ours_items), np.array(ref_items), rtol=0, atol=TOL)


@pytest.mark.parametrize("name", SETS)
def test_rouge_matches_pycocoevalcap(name, tokenized_sets):
    gts, res = tokenized_sets[name]
    ours, ours_items = Rouge().compute_score(gts, res)
    ref, ref_items = RefRouge().compute_score(gts, res)
    assert abs(ours - ref) <= TOL
    np.testing.assert_allclose(ours_items, ref_items, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", SETS)
def test_cider_matches_pycocoevalcap(name, tokenized_sets):
    gts, res = tokenized_sets[name]
    ours, ours_items = Cider().compute_score(gts, res)
    ref, ref_items = RefCider().compute_score(gts, res)
    assert abs(ours - ref) <= TOL
    np.testing.assert_allclose(ours_items, ref_items, rtol=0, atol=TOL)


def test_demo_numbers_bit_identical(tokenized_sets):
    """The coco-caption demo numbers, to the last bit (BLEU, ROUGE-L, CIDEr-D)."""
    gts, res = tokenized_sets["coco_demo"]
    bleu, _ = Bleu(4).compute_score(gts, res)
    assert bleu == [0.5793995754573356, 0.40439129741018104, 0.2785363856619147, 0.1908290437674253]
    assert Rouge().compute_score(gts, res)[0] == 0.39625269357570847
    assert Cider().compute_score(gts, res)[0] == 0.5997905185184199


def test_cider_d_corpus_df_equals_cider(tokenized_sets):
    """CiderD with df built from the call's own references is exactly coco-caption's CIDEr."""
    gts, res = tokenized_sets["coco_demo"]
    keys = list(gts)
    scorer = CiderD.from_references([gts[k] for k in keys])
    scores = scorer.score([res[k][0] for k in keys], [gts[k] for k in keys])
    _, ref_items = RefCider().compute_score(gts, res)
    np.testing.assert_array_equal(scores, ref_items)
    # a second batch reuses the cached reference vectors and gives the same numbers
    np.testing.assert_array_equal(scorer.score([res[k][0] for k in keys], [gts[k] for k in keys]), ref_items)


def test_cider_d_external_df_matches_cider_scorer(tokenized_sets):
    """Cached df from a training corpus: equal to pycocoevalcap's CiderScorer over that corpus.

    CiderScorer's df and N come from all of its items' references, so candidates scored against the first
    100 training reference sets inside a CiderScorer holding all 912 training items must equal CiderD
    built once from the 912 reference sets.
    """
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    train_gts, train_res = tokenized_sets["aac2"]
    _, cand_res = tokenized_sets["aac1"]
    train_keys, cand_keys = list(train_gts), list(cand_res)[:100]
    scorer = CiderD.from_references([train_gts[k] for k in train_keys])
    ours = scorer.score([cand_res[k][0] for k in cand_keys], [train_gts[k] for k in train_keys[:100]])

    ref = CiderScorer(n=4, sigma=6.0)
    for i, k in enumerate(train_keys):
        hyp = cand_res[cand_keys[i]][0] if i < 100 else train_res[k][0]
        ref += (hyp, train_gts[k])
    _, ref_items = ref.compute_score()
    np.testing.assert_array_equal(ours, ref_items[:100])


def test_cider_d_from_self_critical_pickle(tmp_path, tokenized_sets):
    """self-critical.pytorch's pickle: a defaultdict(float) df over word-index strings and the image count."""
    import pickle
    from collections import defaultdict

    gts, res = tokenized_sets["aac1"]
    keys = list(gts)
    refs = [gts[k] for k in keys]
    df = defaultdict(float, document_frequency(refs))
    path = tmp_path / "coco-train-idxs.p"
    path.write_bytes(pickle.dumps({"document_frequency": df, "ref_len": len(refs)}))
    from_pickle = CiderD.from_pickle(path)
    from_refs = CiderD.from_references(refs)
    cands, cand_refs = [res[k][0] for k in keys], refs
    np.testing.assert_array_equal(from_pickle.score(cands, cand_refs), from_refs.score(cands, cand_refs))
    mean, items = from_pickle.compute_score(gts, res)
    assert mean == np.mean(items)
    with pytest.raises(FileNotFoundError, match="prepro_ngrams"):
        CiderD.from_pickle(tmp_path / "missing.p")
    bad = tmp_path / "bad.p"
    bad.write_bytes(pickle.dumps({"df": {}}))
    with pytest.raises(ValueError, match="document_frequency"):
        CiderD.from_pickle(bad)


def test_cider_d_batch_with_shared_and_unknown_references():
    """Samples sharing a reference list, words the df never saw, and an empty candidate."""
    refs = [["a dog runs", "the dog is running"], ["a red car", "a car on the road"], ["a cat"]]
    scorer = CiderD.from_references(refs)
    cands = ["a dog runs", "a dog", "zebra stripes", "", "a red car"]
    cand_refs = [refs[0], refs[0], refs[0], refs[1], refs[1] + ["an unseen bus"]]
    expected = [_plain_cider_d(c, r, document_frequency(refs), len(refs)) for c, r in zip(cands, cand_refs)]
    np.testing.assert_allclose(scorer.score(cands, cand_refs), expected, rtol=0, atol=TOL)
    assert expected[0] > expected[1] > 0 and expected[2] == 0 and expected[3] == 0


def _plain_cider_d(cand, refs, df, ref_len, n=4, sigma=6.0):
    """CIDEr-D of one candidate written straight from the definition (shared_eval spec, section 5)."""
    import math

    def vec(sentence):
        words = sentence.split()
        out = []
        for k in range(1, n + 1):
            grams = [tuple(words[i:i + k]) for i in range(len(words) - k + 1)]
            tf = {g: grams.count(g) for g in grams}
            out.append({g: c * (math.log(ref_len) - math.log(max(1.0, df.get(g, 0.0)))) for g, c in tf.items()})
        return out, max(len(words) - 1, 0)

    h, lh = vec(cand)
    total = [0.0] * n
    for ref in refs:
        r, lr = vec(ref)
        for k in range(n):
            num = sum(min(w, r[k].get(g, 0.0)) * r[k].get(g, 0.0) for g, w in h[k].items())
            nh = math.sqrt(sum(w * w for w in h[k].values()))
            nr = math.sqrt(sum(w * w for w in r[k].values()))
            if nh and nr:
                num /= nh * nr
            total[k] += num * math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
    return 10.0 * sum(total) / n / len(refs)


def test_cider_d_accepts_self_critical_result_lists(tokenized_sets):
    gts, res = tokenized_sets["aac1"]
    keys = list(gts)[:20]
    scorer = CiderD.from_references([gts[k] for k in gts])
    by_dict = scorer.compute_score({k: gts[k] for k in keys}, {k: res[k] for k in keys})
    # two "samples" per image in ruotianluo's list format
    listed = [{"image_id": k, "caption": [res[k][0]]} for k in keys for _ in range(2)]
    mean, scores = scorer.compute_score(gts, listed)
    np.testing.assert_array_equal(scores[::2], by_dict[1])
    np.testing.assert_array_equal(scores[1::2], by_dict[1])
    with pytest.raises(ValueError, match="image_id"):
        scorer.compute_score(gts, [{"image_id": "missing", "caption": ["a"]}])
