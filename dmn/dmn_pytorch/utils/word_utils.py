"""Vocabulary (``Corpus``) and the original's tokeniser.

``corpus.pth`` files are pickles of ``dmn_pytorch.utils.word_utils.Corpus`` (older ones name the module
``utils.word_utils``); the class and attribute names here are kept so those files load. ``load_corpus`` reads
them with ``torch.load(weights_only=True)``, allowing only these two classes.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

UNK_TOKEN = "<unk>"
PAD_TOKEN = "<pad>"
# Splits on runs of non-word characters and KEEPS them as tokens (capturing group), as the original did.
SENTENCE_SPLIT_REGEX = re.compile(r"(\W+)")


class EmptyQueryError(ValueError):
    """A query with no token to feed the model."""


class Dictionary:
    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)

    def __getitem__(self, item: int | str | list[int]) -> int | str | list[str]:
        if isinstance(item, int):
            return self.idx2word[item]
        if isinstance(item, list):
            return [self.idx2word[x] for x in item]
        if isinstance(item, str):
            return self.word2idx[item]
        raise TypeError("query word/index must be int, list of int or str")

    def __contains__(self, word: str) -> bool:
        return word in self.word2idx


class Corpus:
    def __init__(self) -> None:
        self.dictionary = Dictionary()

    def load_file(self, filename: str | Path) -> None:
        """One or more whitespace-separated words per line, lowercased, first occurrence wins; then <unk>, <pad>."""
        with open(filename, encoding="utf-8") as f:
            for line in f:
                for word in line.strip().split():
                    self.dictionary.add_word(word.lower())
        self.dictionary.add_word(UNK_TOKEN)
        self.dictionary.add_word(PAD_TOKEN)

    def split_words(self, line: str) -> list[str]:
        """Lowercased tokens with the separators kept (" " between two words is a token of its own)."""
        words = [w.lower() for w in SENTENCE_SPLIT_REGEX.split(line.strip()) if len(w) > 0]
        if not words:
            raise EmptyQueryError(f"empty query {line!r}")
        # Original: a final "." token is dropped (only when it is exactly "."; ". " or "!" stay).
        if words[-1] == ".":
            words = words[:-1]
        return words

    def tokenize(self, line: str, max_len: int = 20) -> torch.Tensor:
        """Token ids (LongTensor); with ``max_len`` > 0 truncated or LEFT-padded with <pad> to ``max_len``.

        Separators are not in any vocabulary file, so they map to <unk>: "the yellow triangle" gives
        [the, <unk>, yellow, <unk>, triangle] (2n - 1 tokens for n words), as the released weights expect.
        """
        words = self.split_words(line)
        if max_len > 0:
            words = words[:max_len] if len(words) > max_len else [PAD_TOKEN] * (max_len - len(words)) + words
        if not words:
            raise EmptyQueryError(f"query {line!r} has no token left")
        unk = self.dictionary[UNK_TOKEN]
        return torch.tensor([self.dictionary.word2idx.get(w, unk) for w in words], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.dictionary)


# Fully qualified names under which corpus pickles were written: this module, and the original's alias `utils`.
_SAFE_CLASSES = [
    Corpus, Dictionary,
    (Corpus, "utils.word_utils.Corpus"), (Dictionary, "utils.word_utils.Dictionary"),
]


def load_corpus(path: str | Path) -> Corpus:
    """A pickled Corpus, loaded with torch's safe (weights-only) unpickler allowing just Corpus and Dictionary."""
    with torch.serialization.safe_globals(_SAFE_CLASSES):
        corpus = torch.load(path, weights_only=True)
    if not isinstance(corpus, Corpus):
        raise ValueError(f"{path} does not hold a DMN Corpus (got {type(corpus).__name__})")
    return corpus
