"""Seeded random captions built from the pieces the PTB lexer treats specially (for tokenizer fuzzing)."""

import random

_CHARS = (list("abcdeimnorstuwxyzABCDIMNSTUXY0123456789") * 3 + [" "] * 30
          + list(".,;:!?'\"`-_/\\()[]{}<>@#$%&*+=~^|")
          + ["\u2019", "\u2018", "\u201c", "\u201d", "\u2026", "\u2014", "\u2013", "\u00a0", "\u00e9", "\u00bd",
             "\u00a3", "\u20ac", "\u00a2", "\u00ad", "\u0085", "\u00b2", "\u00d7", "\u03b1", "\u65e5", "\u200b",
             "\ufeff", "\U0001F600", "\t", "\x7f", "\u00ab", "\u00bb", "\u2010", "\u0301"])
_PIECES = ["mr", "Mr.", "dr", "etc", "u.s", "U.S.", "a.m", "p.m.", "no", "No.", "vs", "inc", "co", "ltd", "the", "a",
           "i", "it's", "don't", "can't", "won't", "gonna", "cannot", "'s", "n't", "'re", "www.", ".com", "http://x.org/a",
           "The", "A", "He", "St", "Jan", "fig", "ca", "'90s", "o'", "y'", "&amp;", "&quot;", "&apos;", "&lt;", "<b>",
           "</b>", "<a href='x'>", "1/2", "3 1/2", "555-1234", "(555) 123-4567", "12/25/2000", "...", ". . .", "--",
           ":)", ";-)", "(", ")", "l'", "d'", "'tis", "'n'", "c++", "c#", "AT&T", "S&P-500", "t-shirt", "4-year-old",
           "1,000", "3.5", "10:30", "-5", "+3", "$5", "US$", "#1", "@user", "a@b.com", "x.jpg", "ph.d", "Ph.D.", "pty.",
           "Co. Ltd", "e.g.", "i.e.", "rock'n'roll", "ma'am", "y'all", "dunkin'", "'em", "'cause", "c'mon",
           "cont'd.", "x_x", "^_^", "(-_-)", "==", "->", "<<", ">>", "***", "\\*", "_", "?!", "!!!", "??"]


def fuzz_captions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    caps = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.5:
                parts.append(rng.choice(_PIECES))
            else:
                parts.append("".join(rng.choice(_CHARS) for _ in range(rng.randint(1, 6))))
            parts.append(rng.choice([" ", " ", "", ". ", ", ", "  "]))
        caps.append("".join(parts))
    return caps
