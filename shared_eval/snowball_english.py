"""The Snowball English (Porter2) stemmer as shipped in METEOR 1.5's jar (the 2006-era rules).

Newer Snowball releases (the ``snowballstemmer`` 2.x/3.x wheels) changed the English rules, e.g. ``-ogist`` and
``added -> add``, so they disagree with the jar on about 1 word in 1,000; this module follows the jar's version:
``stem(word)`` equals the jar's ``englishStemmer`` on all 186,031 words of its own resources and our corpora.
Strings are handled as Java does, as UTF-16 code units (see ``stem``).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["stem"]

_VOWELS = frozenset("aeiouy")
_VOWELS_WXY = frozenset("aeiouywxY")
_VALID_LI = frozenset("cdeghkmnrt")
_DOUBLES = ("bb", "dd", "ff", "gg", "mm", "nn", "pp", "rr", "tt")

_WHOLE_WORD = {
    "skis": "ski", "skies": "sky", "dying": "die", "lying": "lie", "tying": "tie", "idly": "idl",
    "gently": "gentl", "ugly": "ugli", "early": "earli", "only": "onli", "singly": "singl",
    "sky": "sky", "news": "news", "howe": "howe", "atlas": "atlas", "cosmos": "cosmos", "bias": "bias",
    "andes": "andes",
}
_AFTER_STEP_1A = frozenset(("inning", "outing", "canning", "herring", "earring", "proceed", "exceed", "succeed"))
_REGION_PREFIXES = ("gener", "commun", "arsen")

# suffix -> replacement ("" deletes); "ogi" and "li" carry the extra conditions checked in _step2
_STEP2 = {
    "tional": "tion", "enci": "ence", "anci": "ance", "abli": "able", "entli": "ent", "izer": "ize",
    "ization": "ize", "ational": "ate", "ation": "ate", "ator": "ate", "alism": "al", "aliti": "al",
    "alli": "al", "fulness": "ful", "ousli": "ous", "ousness": "ous", "iveness": "ive", "iviti": "ive",
    "biliti": "ble", "bli": "ble", "ogi": "og", "fulli": "ful", "lessli": "less", "li": "",
}
_STEP3 = {
    "tional": "tion", "ational": "ate", "alize": "al", "icate": "ic", "iciti": "ic", "ical": "ic",
    "ful": "", "ness": "", "ative": "",
}
_STEP4 = ("al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ism", "ate",
          "iti", "ous", "ive", "ize", "ion")


def _longest_suffix(word: list[str], suffixes) -> str | None:
    """The longest of ``suffixes`` that ``word`` ends with (Snowball's ``among``: no fallback to shorter ones)."""
    text = "".join(word)
    best = None
    for suffix in suffixes:
        if text.endswith(suffix) and (best is None or len(suffix) > len(best)):
            best = suffix
    return best


def _is_vowel(ch: str) -> bool:
    return ch in _VOWELS


def _short_syllable_before(word: list[str], end: int) -> bool:
    """Snowball ``shortv`` ending at ``end``: non-vowel(+w,x,Y) vowel non-vowel, or vowel non-vowel at the start."""
    if (end >= 3 and word[end - 1] not in _VOWELS_WXY and _is_vowel(word[end - 2])
            and not _is_vowel(word[end - 3])):
        return True
    return end == 2 and not _is_vowel(word[1]) and _is_vowel(word[0])


def _regions(word: list[str]) -> tuple[int, int]:
    """R1 and R2 start positions (R1 fixed after gener/commun/arsen)."""
    n = len(word)

    def after_vowel_then_consonant(start: int) -> int:
        i = start
        while i < n and not _is_vowel(word[i]):
            i += 1
        while i < n and _is_vowel(word[i]):
            i += 1
        return i + 1 if i < n else n

    text = "".join(word)
    prefix = next((p for p in _REGION_PREFIXES if text.startswith(p)), None)
    if prefix is not None:
        p1 = len(prefix)
    else:
        p1 = after_vowel_then_consonant(0)
        if p1 >= n:
            return n, n
    return p1, after_vowel_then_consonant(p1)


def _mark_y(word: list[str]) -> bool:
    """Initial y and y after a vowel become Y (consonant y); returns whether any was marked."""
    found = False
    if word and word[0] == "y":
        word[0] = "Y"
        found = True
    for i in range(len(word) - 1):
        if _is_vowel(word[i]) and word[i + 1] == "y":
            word[i + 1] = "Y"
            found = True
    return found


def _step1a(word: list[str]) -> None:
    apostrophe = _longest_suffix(word, ("'", "'s'", "'s"))
    if apostrophe:
        del word[len(word) - len(apostrophe):]
    suffix = _longest_suffix(word, ("sses", "ied", "ies", "s", "ss", "us"))
    if suffix == "sses":
        del word[-2:]
    elif suffix in ("ied", "ies"):
        stem_len = len(word) - 3
        word[stem_len:] = ["i"] if stem_len >= 2 else ["i", "e"]
    elif suffix == "s":
        if any(_is_vowel(ch) for ch in word[:-2]):
            del word[-1]


def _step1b(word: list[str], p1: int) -> None:
    suffix = _longest_suffix(word, ("eed", "eedly", "ed", "edly", "ing", "ingly"))
    if suffix is None:
        return
    start = len(word) - len(suffix)
    if suffix in ("eed", "eedly"):
        if start >= p1:
            word[start:] = ["e", "e"]
        return
    if not any(_is_vowel(ch) for ch in word[:start]):
        return
    del word[start:]
    ending = _longest_suffix(word, ("at", "bl", "iz") + _DOUBLES)
    if ending in ("at", "bl", "iz"):
        word.append("e")
    elif ending is not None:
        del word[-1]
    elif len(word) == p1 and _short_syllable_before(word, len(word)):
        word.append("e")


def _step1c(word: list[str]) -> None:
    if len(word) >= 3 and word[-1] in ("y", "Y") and not _is_vowel(word[-2]):
        word[-1] = "i"


def _replace_in_region(word: list[str], table: dict[str, str], region_start: int, suffix: str) -> None:
    start = len(word) - len(suffix)
    if start >= region_start:
        word[start:] = list(table[suffix])


def _step2(word: list[str], p1: int) -> None:
    suffix = _longest_suffix(word, _STEP2)
    if suffix is None or len(word) - len(suffix) < p1:
        return
    before = word[len(word) - len(suffix) - 1] if len(word) > len(suffix) else ""
    if suffix == "ogi" and before != "l":
        return
    if suffix == "li" and before not in _VALID_LI:
        return
    _replace_in_region(word, _STEP2, p1, suffix)


def _step3(word: list[str], p1: int, p2: int) -> None:
    suffix = _longest_suffix(word, _STEP3)
    if suffix is None:
        return
    start = len(word) - len(suffix)
    if start < p1 or (suffix == "ative" and start < p2):
        return
    word[start:] = list(_STEP3[suffix])


def _step4(word: list[str], p2: int) -> None:
    suffix = _longest_suffix(word, _STEP4)
    if suffix is None:
        return
    start = len(word) - len(suffix)
    if start < p2:
        return
    if suffix == "ion" and (start == 0 or word[start - 1] not in ("s", "t")):
        return
    del word[start:]


def _step5(word: list[str], p1: int, p2: int) -> None:
    if not word:
        return
    last = len(word) - 1
    if word[-1] == "e":
        if last >= p2 or (last >= p1 and not _short_syllable_before(word, last)):
            del word[-1]
    elif word[-1] == "l" and last >= p2 and last >= 1 and word[-2] == "l":
        del word[-1]


def _stem_units(text: str) -> str:
    if text in _WHOLE_WORD:
        return _WHOLE_WORD[text]
    if len(text) < 3:
        return text
    word = list(text)
    if word[0] == "'":
        del word[0]
    y_found = _mark_y(word)
    p1, p2 = _regions(word)
    _step1a(word)
    if "".join(word) not in _AFTER_STEP_1A:
        _step1b(word, p1)
        _step1c(word)
        _step2(word, p1)
        _step3(word, p1, p2)
        _step4(word, p2)
        _step5(word, p1, p2)
    result = "".join(word)
    return result.replace("Y", "y") if y_found else result


def _to_utf16_units(text: str) -> str:
    """Characters beyond the BMP as two surrogate code points, as a Java String holds them."""
    out = []
    for ch in text:
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF)))
        else:
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=1 << 18)
def stem(word: str) -> str:
    """The jar's English stem of a (lowercased) word."""
    if any(ord(ch) > 0xFFFF for ch in word):
        units = _stem_units(_to_utf16_units(word))
        return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _stem_units(word)
