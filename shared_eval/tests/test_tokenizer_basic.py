"""Our tokenizer against the Java PTBTokenizer (through pycocoevalcap) on the demo captions."""

from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer as JavaPTBTokenizer

from shared_eval.captions import PTBTokenizer, tokenize


def _as_dicts(caps):
    return {k: [{"caption": c} for c in v] for k, v in caps.items()}


def test_demo_tokenization_equals_java(raw_sets):
    for name in ("coco_demo", "spot"):
        gts, res = raw_sets[name]
        for part in (gts, res):
            assert PTBTokenizer().tokenize(_as_dicts(part)) == JavaPTBTokenizer().tokenize(_as_dicts(part))


def test_plain_string_lists_accepted():
    out = PTBTokenizer().tokenize({1: ["A dog's ball.", "Two cats"], "x": ["It can't be!"]})
    assert out == {1: ["a dog 's ball", "two cats"], "x": ["it ca n't be"]}
    assert tokenize(["Hello, World."]) == ["hello world"]
