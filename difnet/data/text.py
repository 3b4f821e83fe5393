"""Caption text: spaCy tokenising as the original's TextField, numericalising, padding and decoding."""
from __future__ import annotations

import itertools
from collections import Counter
from typing import Iterable, Sequence

import torch

from .vocab import Vocab

# punctuation tokens the original drops (TextField.punctuations, nopoints=False so ".." is kept)
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])


class CaptionTokenizer:
    """Lower-case, spaCy English rule tokenizer (``spacy.blank("en")``, the same rules as the original's
    ``spacy.load('en')`` tokenizer), punctuation tokens dropped."""

    def __init__(self) -> None:
        import spacy

        self._nlp = spacy.blank("en")

    def __call__(self, caption: str) -> list[str]:
        tokens = (tok.text for tok in self._nlp.tokenizer(caption.lower().rstrip("\n")))
        return [t for t in tokens if t not in PUNCTUATIONS]


def build_vocab(tokenized_captions: Iterable[Sequence[str]], min_freq: int = 5) -> Vocab:
    """Vocabulary of every token seen at least ``min_freq`` times (the original uses train + val captions)."""
    return Vocab(Counter(itertools.chain.from_iterable(tokenized_captions)), min_freq=min_freq)


def numericalize(batch: Sequence[Sequence[str]], vocab: Vocab) -> torch.Tensor:
    """(b, max_len + 2) token ids: <bos> words <eos> <pad>..., padded to the longest caption, not truncated."""
    max_len = max(len(x) for x in batch)
    rows = [["<bos>", *x, "<eos>"] + ["<pad>"] * (max_len - len(x)) for x in batch]
    return torch.tensor([[vocab.stoi[w] for w in row] for row in rows], dtype=torch.long)


def decode(word_idxs: torch.Tensor, vocab: Vocab, join_words: bool = True) -> list:
    """Token ids (b, L) -> captions, each cut at its first <eos>; words joined by spaces unless join_words=False."""
    eos = vocab.stoi["<eos>"]
    captions = []
    for row in word_idxs.tolist():
        words = [vocab.itos[i] for i in itertools.takewhile(lambda i: i != eos, row)]
        captions.append(" ".join(words) if join_words else words)
    return captions


def merge_repeats(words: Sequence[str]) -> str:
    """Consecutive repeated words merged, as the original does before scoring a generated caption."""
    return " ".join(k for k, _ in itertools.groupby(words))
