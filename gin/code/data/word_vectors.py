"""Word vectors for the phrase encoder: spaCy ``en_core_web_md`` (the original's) or a deterministic offline substitute."""
from __future__ import annotations

import hashlib
import logging
from functools import lru_cache

import numpy as np

from errors import ConfigError

LOG = logging.getLogger(__name__)


class WordVectors:
    """``tokens(text)`` splits like spaCy's English tokenizer; ``vectors(tokens)`` gives len(tokens) x dim float32."""

    def __init__(self, nlp, dim: int, hashed: bool) -> None:
        self.nlp = nlp
        self.dim = dim
        self.hashed = hashed

    def tokens(self, text: str) -> list:
        return list(self.nlp.make_doc(text))

    def vectors(self, tokens: list) -> np.ndarray:
        if self.hashed:
            return np.stack([hashed_vector(t.text, self.dim) for t in tokens]) if tokens else np.zeros((0, self.dim), np.float32)
        return np.stack([t.vector for t in tokens]).astype(np.float32)


@lru_cache(maxsize=65536)
def hashed_vector(token: str, dim: int) -> np.ndarray:
    """N(0, 0.3^2) per dimension, seeded by SHA-256 of the exact token text: the same on every machine and run."""
    seed = int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:8], "little")
    return (np.random.default_rng(seed).standard_normal(dim) * 0.3).astype(np.float32)


def load_word_vectors(name: str, dim: int) -> WordVectors:
    import spacy

    if name == "hash":
        LOG.warning("*** word vectors: deterministic hash-seeded %d-d SUBSTITUTE (sha256 of the token), not spaCy "
                    "en_core_web_md; fine for the toy data, for real runs use --word_vectors=en_core_web_md after "
                    "'make gin-data' ***", dim)
        return WordVectors(spacy.blank("en"), dim, hashed=True)
    try:
        nlp = spacy.load(name)
    except OSError as exc:
        raise ConfigError(f"spaCy model {name!r} is not installed: run 'make gin-data' (it installs it) or pass "
                          f"--word_vectors=hash for the offline substitute") from exc
    width = nlp.vocab.vectors_length
    if width != dim:
        raise ConfigError(f"spaCy model {name!r} has {width}-d vectors but --emb_dim={dim}")
    LOG.info("word vectors: spaCy %s (%d-d)", name, width)
    return WordVectors(nlp, dim, hashed=False)
