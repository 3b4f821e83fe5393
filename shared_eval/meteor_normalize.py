"""METEOR 1.5's ``-norm`` tokenizer (English), with Java's string and regex semantics.

The jar's normalizer is a Moses-style tokenizer: punctuation split off, dots kept on nonbreaking prefixes, dashes
between words dropped, quotes and dashes unified, English contractions split to the right; then the line is
lowercased. Java's ``\\s`` and ``\\p{Digit}``/``\\p{Lower}`` are ASCII-only, spelled out below.
"""

from __future__ import annotations

import re

__all__ = ["normalize_line", "java_trim", "java_tokens"]

_ALPHA = ("A-Za-z\u0160\u017d\u0161\u017e\u0178\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e"
          "\u0400-\u04ff\u0500-\u0527\ua640-\ua66e\ua67e-\ua697\u1d00-\u1d7f")
_ALNUM = "0-9" + _ALPHA
_JAVA_SPACE = " \t\n\x0b\f\r"  # java.util.regex \s

_SEPARATE_OTHER = re.compile(f"([^{_ALNUM}{_JAVA_SPACE}.'`,\\-\u2018\u2019])")
_MULTI_DOT = re.compile(r"\.([.]+)")
_MULTI_DOT_NEXT = re.compile(r"DOTMULTI\.([^.])")
_COMMAS = (re.compile(r"([^0-9]),([^0-9])"), re.compile(r"([0-9]),([^0-9])"), re.compile(r"([^0-9]),([0-9])"))
_SINGLE_QUOTES = re.compile("[`\u2018\u2019]")
_DOUBLE_QUOTES = re.compile("[\u201c\u201d]|''")
_DASH_BETWEEN_WORDS = re.compile(f"([{_ALNUM}.])-([{_ALNUM}])")
_CONTRACTIONS = (
    (re.compile(f"([^{_ALPHA}])'([^{_ALPHA}])"), r"\1 ' \2"),
    (re.compile(f"([^{_ALPHA}0-9])'([{_ALPHA}])"), r"\1 ' \2"),
    (re.compile(f"([{_ALPHA}])'([^{_ALPHA}])"), r"\1 ' \2"),
    (re.compile(f"([{_ALPHA}])'([{_ALPHA}])"), r"\1 '\2"),
    (re.compile("([0-9])'(s)"), r"\1 '\2"),
)
_LETTER = re.compile(f"[{_ALPHA}]")
_WHITE = re.compile("[ \u2000-\u200a\u202f\u205f\u3000\u00a0]+")
_TOKEN_DELIMITERS = re.compile("[ \t\n\r\f]+")  # java.util.StringTokenizer
_JAVA_TRIMMED = "".join(chr(c) for c in range(0x21))
_PLAIN = re.compile("[a-z0-9 ]*")


def java_trim(text: str) -> str:
    """``String.trim()``: drops code points up to U+0020 at both ends."""
    return text.strip(_JAVA_TRIMMED)


def java_tokens(text: str) -> list[str]:
    """``new StringTokenizer(text)`` tokens."""
    return [t for t in _TOKEN_DELIMITERS.split(text) if t]


def _escape_multi_dots(line: str) -> str:
    line = _MULTI_DOT.sub(r" DOTMULTI\1", line)
    while "DOTMULTI." in line:
        line = _MULTI_DOT_NEXT.sub(r"DOTDOTMULTI \1", line)
        line = line.replace("DOTMULTI.", "DOTDOTMULTI")
    return line


def _split_sentence_dots(words: list[str], prefixes: dict[str, bool]) -> str:
    """Rebuild the line, splitting a final dot off unless the word is a nonbreaking prefix (or U.S.-like)."""
    out = []
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if len(word) > 1 and word.endswith("."):
            prefix = word[:-1]
            numeric_only = prefixes.get(prefix)
            if "." in prefix and _LETTER.search(prefix):
                out.append(word.replace(".", ""))
            elif numeric_only is False or following[:1].isascii() and following[:1].islower():
                out.append(word)
            elif numeric_only and following[:1].isdigit() and following[:1].isascii():
                out.append(word)
            else:
                out.append(prefix + " .")
        else:
            out.append(word)
    return "".join(w + " " for w in out)


def normalize_line(line: str, prefixes: dict[str, bool]) -> str:
    """``Normalizer.normalizeLine(line, LANG_EN, keepPunctuation=true)`` followed by ``toLowerCase()``."""
    if _PLAIN.fullmatch(line):  # no rule below applies to lowercase ASCII words and digits (most captions)
        return " ".join(line.split())
    line = _SEPARATE_OTHER.sub(r" \1 ", f" {line} ")
    line = _escape_multi_dots(line)
    for comma in _COMMAS:
        line = comma.sub(r"\1 , \2", line)
    line = _SINGLE_QUOTES.sub("'", line)
    line = _DOUBLE_QUOTES.sub(' " ', line)
    line = line.replace("\u2013", "-").replace("--", "-")
    line = _DASH_BETWEEN_WORDS.sub(r"\1 \2", line)
    for pattern, replacement in _CONTRACTIONS:
        line = pattern.sub(replacement, line)
    line = _split_sentence_dots(java_tokens(line), prefixes)
    while "DOTDOTMULTI" in line:
        line = line.replace("DOTDOTMULTI", "DOTMULTI.")
    line = line.replace("DOTMULTI", ".")
    return java_trim(_WHITE.sub(" ", line)).lower()
