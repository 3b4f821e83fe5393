"""CLIP's byte-level BPE tokenizer (vocabulary 49,408) read from the BPE file shipped in the open_clip_torch wheel,
with an optional compact vocabulary: only the tokens a corpus uses, re-indexed (for small models on toy data)."""
from __future__ import annotations

import gzip
import html
import importlib.util
import os
from functools import lru_cache
from typing import Iterable

import ftfy
import regex as re

SOT, EOT = "<|startoftext|>", "<|endoftext|>"


class VocabularyError(ValueError):
    """A caption token or checkpoint table that does not fit the tokenizer's vocabulary."""


def default_bpe() -> str:
    """The BPE merges file of the installed open_clip_torch wheel (byte-identical to OpenAI's)."""
    spec = importlib.util.find_spec("open_clip")  # located, not imported (importing open_clip is slow)
    folder = list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else ""
    path = os.path.join(folder, "bpe_simple_vocab_16e6.txt.gz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BPE vocabulary not found at {path}: pip install open_clip_torch")
    return path


@lru_cache()
def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(word[:-1], word[1:]))


def clean(text: str) -> str:
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


@lru_cache(maxsize=4)
def _load_bpe(path: str) -> tuple[list[str], dict[tuple[str, str], int]]:
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1: 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + [SOT, EOT]
    return vocab, dict(zip(merges, range(len(merges))))


class ClipTokenizer:
    def __init__(self, bpe_path: str | None = None, keep_tokens: Iterable[str] | None = None):
        vocab, self.bpe_ranks = _load_bpe(bpe_path or default_bpe())
        if keep_tokens is not None:  # compact: the kept tokens in their BPE order ("!" = 0 first, SOT/EOT last)
            keep = set(keep_tokens) | {"!", SOT, EOT}
            vocab = [t for t in vocab if t in keep]
        self.encoder = {t: i for i, t in enumerate(vocab)}
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.cache = {SOT: SOT, EOT: EOT}
        self.pat = re.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                              r"""[^\s\p{L}\p{N}]+""", re.IGNORECASE)
        self.vocab = self.encoder

    @classmethod
    def compact(cls, corpus: Iterable[str], bpe_path: str | None = None) -> "ClipTokenizer":
        """A tokenizer over only the BPE tokens that ``corpus`` uses (ids keep BPE order, so EOT stays the largest)."""
        full = cls(bpe_path)
        used = {t for sentence in corpus for t in full.tokenize(sentence)}
        return cls(bpe_path, keep_tokens=used)

    def __len__(self) -> int:
        return len(self.encoder)

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        result = " ".join(word)
        self.cache[token] = result
        return result

    def tokenize(self, text: str) -> list[str]:
        tokens = []
        for token in re.findall(self.pat, clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            tokens.extend(self.bpe(token).split(" "))
        return tokens

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        missing = [t for t in tokens if t not in self.encoder]
        if missing:
            raise VocabularyError(f"tokens {missing[:5]} are not in the {len(self)}-token vocabulary "
                                  "(a compact vocabulary must be built from the same corpus)")
        return [self.encoder[t] for t in tokens]

    def encode(self, text: str) -> list[int]:
        return self.convert_tokens_to_ids(self.tokenize(text))

    def decode(self, ids: Iterable[int]) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray([self.byte_decoder[c] for c in text]).decode("utf-8", errors="replace").replace("</w>", " ")

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> str:
        return self.decode(ids)
