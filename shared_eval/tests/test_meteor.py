"""METEOR's interface: the default (Python) backend, the jar backend's one JVM per process, input checks."""

import shutil

import pytest


def test_demo_meteor_equals_pycocoevalcap(meteor, tokenized_sets):
    gts, res = tokenized_sets["coco_demo"]
    corpus, items = meteor.compute_score(gts, res)
    # pycocoevalcap 1.2 + OpenJDK 17 on the coco-caption demo (shared_eval spec, section 9)
    assert corpus == 0.19525467177780284
    assert len(items) == len(gts)
    assert abs(sum(items) / len(items) - 0.200233) < 5e-7  # the item mean differs from the corpus score


def test_meteor_jar_backend_reuses_one_jvm(tokenized_sets):
    from shared_eval.captions import Meteor

    if shutil.which("java") is None:
        pytest.skip("the jar backend needs Java")
    jar = Meteor(backend="java")
    assert Meteor(backend="java")._proc is jar._proc
    gts, res = tokenized_sets["aac1"]
    first = jar.compute_score(gts, res)
    assert Meteor(backend="java").compute_score(gts, res) == first


def test_default_backend_needs_no_java(monkeypatch, tokenized_sets):
    from shared_eval import meteor as meteor_module
    from shared_eval.captions import Meteor

    monkeypatch.setattr(meteor_module, "_PROCESS", None)
    monkeypatch.setattr(meteor_module.shutil, "which", lambda name: None)
    scorer = Meteor()
    assert scorer.backend == "python"
    gts, res = tokenized_sets["spot"]
    corpus, _ = scorer.compute_score(gts, res)
    assert corpus == 0.16304236403902536  # the jar's answer (OpenJDK 17)
    assert meteor_module._PROCESS is None
    with pytest.raises(ValueError, match="backend"):
        Meteor(backend="jar")


def test_meteor_rejects_bad_input(meteor):
    with pytest.raises(ValueError):
        meteor.compute_score({1: ["a dog"]}, {2: ["a dog"]})
    with pytest.raises(ValueError):
        meteor.compute_score({1: ["a dog"]}, {1: ["a dog", "two"]})


def test_multi_line_input_is_refused_before_reaching_the_jvm():
    from shared_eval.meteor import score_line

    assert score_line("a  dog|||", ["a dog", "the dog"]) == "SCORE ||| a dog ||| the dog ||| a dog"
    with pytest.raises(ValueError, match="one line per caption"):
        score_line("a dog\nruns", ["a dog"])


def test_missing_java_is_one_clear_error(monkeypatch, meteor):
    from shared_eval import meteor as meteor_module
    from shared_eval.captions import Meteor, MeteorUnavailableError

    monkeypatch.setattr(meteor_module, "_PROCESS", None)  # restored after the test: the session JVM survives
    monkeypatch.setattr(meteor_module.shutil, "which", lambda name: None)
    with pytest.raises(MeteorUnavailableError, match="needs Java"):
        Meteor(backend="java")
