"""Vocabulary, losses and visdom helpers."""
from .word_utils import Corpus, Dictionary

__all__ = ["Corpus", "Dictionary"]
