"""evaluate(), the CLI and SPICE's message (the CLI shares the session's METEOR JVM)."""

import pytest

from shared_eval.captions import Bleu, Cider, Rouge, SpiceUnavailableError, evaluate, evaluate_with_images, main

DEMO = {"Bleu_1": 0.5793995754573356, "Bleu_2": 0.40439129741018104, "Bleu_3": 0.2785363856619147,
        "Bleu_4": 0.1908290437674253, "METEOR": 0.19525467177780284, "ROUGE_L": 0.39625269357570847,
        "CIDEr": 0.5997905185184199}


def test_cli_prints_the_demo_numbers_exactly(meteor, demo_files, capsys):
    ann, results = demo_files
    assert main(["--annotations", str(ann), "--results", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{k}: {v!r}" for k, v in DEMO.items()]


def test_cli_missing_file_is_one_line(tmp_path, capsys):
    assert main(["--annotations", str(tmp_path / "nope.json"), "--results", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.json" in err[0]


def test_evaluate_raw_and_tokenized(demo_raw, tokenized_sets):
    gts, res = demo_raw
    scores = evaluate(gts, res, meteor=False)
    assert scores == {k: v for k, v in DEMO.items() if k != "METEOR"}
    tgts, tres = tokenized_sets["coco_demo"]
    assert evaluate(tgts, tres, tokenized=True, meteor=False) == scores


def test_evaluate_per_image_scores(tokenized_sets):
    gts, res = tokenized_sets["aac1"]
    corpus, per_image = evaluate_with_images(gts, res, tokenized=True, meteor=False)
    keys = list(gts)
    assert list(per_image) == keys
    _, bleu_items = Bleu(4).compute_score(gts, res)
    _, rouge_items = Rouge().compute_score(gts, res)
    _, cider_items = Cider().compute_score(gts, res)
    for i, k in enumerate(keys):
        assert per_image[k]["image_id"] == k
        assert per_image[k]["Bleu_4"] == bleu_items[3][i]
        assert per_image[k]["ROUGE_L"] == rouge_items[i]
        assert per_image[k]["CIDEr"] == cider_items[i]
    assert set(corpus) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}


def test_evaluate_accepts_caption_dicts_and_checks_keys():
    gts = {1: [{"caption": "A dog runs."}, {"caption": "a dog"}], 2: [{"caption": "Two cats."}]}
    res = {1: [{"caption": "a dog runs"}], 2: [{"caption": "two cats"}]}
    assert evaluate(gts, res, meteor=False) == evaluate({1: ["a dog runs", "a dog"], 2: ["two cats"]},
                                                        {1: ["a dog runs"], 2: ["two cats"]}, meteor=False)
    with pytest.raises(ValueError, match="same keys"):
        evaluate({1: ["a"]}, {2: ["a"]}, meteor=False)


def test_spice_says_what_to_download():
    with pytest.raises(SpiceUnavailableError, match="stanford-corenlp-full-2015-12-09.zip"):
        evaluate({1: ["a dog"]}, {1: ["a dog"]}, meteor=False, spice=True)
