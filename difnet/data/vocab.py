"""The captioning vocabulary, pickle-compatible with the original's ``vocab.pkl`` (class ``data.vocab.Vocab``).

The released weights index DIFNet's own ``vocab.pkl`` (10,201 tokens), so it must be read as it is. It pickles
the original's classes; ``load_vocab`` maps them onto the class below without importing the original code and
refuses anything else. A vocabulary this module saves unpickles in the original code too (same class path and
attributes: ``freqs``, ``itos``, ``stoi``, ``vectors``, plus ``built_from`` where train.py built it, which the
original ignores).
"""
from __future__ import annotations

import collections
import os
import pickle
from collections import Counter, defaultdict
from typing import Iterable

from errors import DifnetError

SPECIALS = ("<unk>", "<pad>", "<bos>", "<eos>")


def _default_unk_index() -> int:
    return 0


class Vocab:
    """itos: index -> token (specials first, then by frequency, then alphabetically); stoi: token -> index
    (unknown tokens -> 0, <unk>)."""

    # {"annotation_folder", "captions_sha256"} of the captions train.py built it from; None in the released file
    built_from: dict[str, str] | None = None

    def __init__(self, counter: Counter, min_freq: int = 1, specials: Iterable[str] = SPECIALS) -> None:
        self.freqs = counter
        counter = counter.copy()
        self.itos = list(specials)
        for tok in self.itos:
            del counter[tok]
        words = sorted(counter.items(), key=lambda kv: kv[0])
        words.sort(key=lambda kv: kv[1], reverse=True)
        self.itos += [w for w, f in words if f >= max(min_freq, 1)]
        self.stoi = defaultdict(_default_unk_index, {tok: i for i, tok in enumerate(self.itos)})
        self.vectors = None

    def __len__(self) -> int:
        return len(self.itos)


class _VocabUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("data.vocab", "Vocab"): Vocab,
        ("data.vocab", "_default_unk_index"): _default_unk_index,
        ("collections", "Counter"): collections.Counter,
        ("collections", "defaultdict"): collections.defaultdict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "dict"): dict,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a vocabulary file")


def load_vocab(path: str) -> Vocab:
    """Read a vocab.pkl written by the original code or by ours."""
    try:
        with open(path, "rb") as f:
            vocab = _VocabUnpickler(f).load()
    except FileNotFoundError:
        raise DifnetError(f"vocabulary {path} not found: train once to build it, or use the released vocab.pkl "
                          "('make difnet-data')") from None
    except (pickle.UnpicklingError, EOFError, AttributeError) as e:
        raise DifnetError(f"{path} is not a DIFNet vocabulary ({e})") from None
    if not isinstance(vocab, Vocab):
        raise DifnetError(f"{path} is not a DIFNet vocabulary (holds {type(vocab).__name__})")
    if not isinstance(vocab.stoi, defaultdict):
        vocab.stoi = defaultdict(_default_unk_index, vocab.stoi)
    return vocab


def save_vocab(vocab: Vocab, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump(vocab, f)
    os.replace(tmp, path)
