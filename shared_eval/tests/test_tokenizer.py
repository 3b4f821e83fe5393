"""The pure-Python tokenizer against the Java PTBTokenizer (run through pycocoevalcap, the oracle)."""

import logging
import random
import shutil

import pytest
from fuzz_captions import fuzz_captions
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer as JavaPTBTokenizer

from shared_eval.captions import PTBTokenizer, tokenize

pytestmark = pytest.mark.skipif(shutil.which("java") is None,
                                reason="the oracle, pycocoevalcap's PTB tokenizer, needs Java")


def java_tokenize(captions: list[str]) -> list[str]:
    """One Java call over all captions, in order (as coco-caption does)."""
    out = JavaPTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    return [out[i][0] for i in range(len(captions))]


def assert_same(captions: list[str]) -> None:
    ours, java = tokenize(captions), java_tokenize(captions)
    diffs = [(c, j, o) for c, j, o in zip(captions, java, ours) if j != o]
    assert not diffs, f"{len(diffs)} of {len(captions)} captions differ, e.g. {diffs[:3]}"


def test_coco_val2014_sample_equals_java(coco_val):
    captions = [a["caption"] for a in coco_val["annotations"]]
    sample = [captions[i] for i in random.Random(2014).sample(range(len(captions)), 6000)]
    # also every val2014 caption holding a character other than letters, digits, space and period
    unusual = [c for c in captions if any(not (ch.isalnum() or ch in " .") for ch in c)]
    assert len(unusual) > 4000
    assert_same(sample + unusual)


@pytest.mark.slow
@pytest.mark.parametrize("split", ["val2014", "train2014"])
def test_coco_full_split_equals_java(split, coco_annotations):
    import json

    anns = json.loads((coco_annotations / f"captions_{split}.json").read_text())["annotations"]
    captions = [a["caption"] for a in anns]
    assert len(captions) == {"val2014": 202654, "train2014": 414113}[split]
    assert_same(captions)


@pytest.mark.parametrize("seed", [7, 8])
def test_random_lexer_inputs_equal_java(seed):
    """Seeded random strings made of the pieces the lexer treats specially (URLs, SGML, clitics, unicode...)."""
    assert_same(fuzz_captions(2500, seed))


HAND_CASES = [
    'He said "hello" to me.', "She said, 'no way' loudly.", "Mr. Smith and Dr. Jones went to Washington D.C. today.",
    "It is 5 p.m. in the U.S.", "I met Mr.", "The dog sat on the couch.A cat was there.", "one.two three",
    "The price is $5 or US$5 or \u00a33 or \u20ac4 or \u00a57.", "He ate \u00bd a pie and \u00be of a cake.",
    "1,000 people at 10:30 ate 3.5 pies.", "A t-shirt on a 4-year-old boy.",
    "Visit http://example.com/page or www.google.com or mail me@example.com now.", "I don't know, can't say, won't go.",
    "I'm gonna wanna gotta lemme gimme cannot do it.", "'Tis the season, 'twas the night.", "Rock 'n' roll is here.",
    "The dogs' bowls are empty.", "Wait... what\u2026 really -- yes \u2014 no \u2013 maybe - ok.", "What?! No!!! Really??",
    "Smile :) and frown :( now ;)", "Brackets (round) [square] {curly} here.", "A/B and 1/2 and 3 1/2 cups & stuff * star.",
    "Colour grey is fine.", "Emoji \U0001F600 inside.", "dog\U0001F600cat", "Non\u00a0breaking space.", "Next\u0085line.",
    "Soft\u00adhyphen.", "y'all ma'am o'clock rock'n'roll.", "the 1990s and '90s and 2nd place.", "AT&T and S&P-500.",
    "c++ and c# and f# languages.", "etc. and vs. and i.e. and e.g. things.", "It's the dog's, isn't it?",
    "A man on a cell phone.I think.", "The letter a.", "Plan B.", "Vitamin C.", "The U.S.", "A dog at the St. Louis zoo.",
    "<b>bold</b> text", "A &amp; B and &lt;tag&gt;", "Cost is 5\u00a2 now.", "Phone (555) 123-4567.", "Date 12/25/2000.",
    "A---B and A----B and A-----B", "Ugh.. so .. many dots....", "", "   ", "only punctuation: . , ;",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9.", "Greek \u03b1\u03b2\u03b3 and Cyrillic \u043a\u043e\u0442.", "\u65e5\u672c\u8a9e\u3002",
    "\u201cCurly\u201d and \u2018single\u2019 quotes, it\u2019s", "\u0130stanbul \u03a3\u039f\u03a3", "tab\tand\x00nul\x7f",
    # the next caption's first word decides whether a one-letter abbreviation keeps its period
    "a photo of vitamin c.", "The dog", "a photo of vitamin c.", "two dogs", "in the U.S.", "A man",
    "the letter b.", "", "  ", "", "The end", "etc.", "", "Two", "the letter x.", "<b>", "z.",
]


def test_hand_cases_equal_java():
    assert_same(HAND_CASES)


@pytest.mark.parametrize("caption,expected", [
    ("A man's dog doesn't bark.", "a man 's dog does n't bark"),
    ("I can't, cannot, gonna", "i ca n't can not gon na"),
    ("Mr. Smith met Dr. Who at 5 p.m.", "mr. smith met dr. who at 5 p.m."),
    ("He sat on the couch.A cat", "he sat on the couch.a cat"),
    ("A (red) [big] {odd} box :) ok", "a -lrb- red -rrb- -lsb- big -rsb- -lcb- odd -rcb- box :-rrb- ok"),
    ("ends with a smiley :)", "ends with a smiley -rrb-"),  # a smiley needs a following character
    ('She said "hi" and \'bye\'', "she said hi and bye"),
    ("1,000 3.5 10:30 t-shirt 4-year-old", "1,000 3.5 10:30 t-shirt 4-year-old"),
    ("\u00a35 \u20ac5 $5 US$5 \u00bd", "# 5 $ 5 $ 5 us$ 5 1/2"),
    ("wait... now -- then \u2014 ok?! !!!", "wait now then ok ?! !!!"),
    ("Colour grey and/or *", "colour grey and/or *"),
    ("dogs' toys", "dogs toys"),
])
def test_known_outputs(caption, expected):
    """Hand-checked outputs of the 3.4.1 tokenizer (spec section 1)."""
    assert tokenize([caption]) == [expected]


def test_empty_captions_keep_their_slot():
    assert tokenize(["", "   ", "A dog.", "."]) == ["", "", "a dog", ""]


def test_line_break_characters_never_shift_captions(caplog):
    captions = ["a\rb", "c dog.", "e\u2028f", "g"]
    with caplog.at_level(logging.WARNING, logger="shared_eval.ptb"):
        assert tokenize(captions) == ["a b", "c dog", "e f", "g"]
    assert "treated as spaces" in caplog.text
    # the Java path silently shifts every later caption by one line per break (the hazard we avoid)
    assert java_tokenize(captions)[:2] == ["a", "b"]


def test_ptbtokenizer_interface_keys_and_order():
    data = {3: [{"caption": "A dog."}, {"caption": "Two cats!"}], "x": ["It can't be"], 1: ["Hi"]}
    out = PTBTokenizer().tokenize(data)
    assert list(out) == [3, "x", 1]
    assert out == {3: ["a dog", "two cats"], "x": ["it ca n't be"], 1: ["hi"]}


def test_non_string_caption_rejected():
    with pytest.raises(TypeError, match="captions must be str"):
        tokenize(["ok", 5])
