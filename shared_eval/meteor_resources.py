"""METEOR 1.5's English resources, read from pycocoevalcap's jar once and cached on disk.

The jar carries the function words, the nonbreaking prefixes and the WordNet synonym files; the paraphrase table
(5.27 M entries, 61 MB gzipped) lies next to it. The first use parses them (about a minute) into
``$VLREPRO_CACHE`` (default ``~/.cache/vlrepro``) ``/meteor-1.5/``; later processes load that in well under a
second (the paraphrase pairs are memory-mapped numpy arrays).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .meteor_normalize import java_tokens

__all__ = ["MeteorResources", "load_resources", "cache_dir"]

_FORMAT = 2  # bump when the cached layout changes


@dataclass(frozen=True)
class MeteorResources:
    function_words: frozenset[str]
    nonbreaking_prefixes: dict[str, bool]  # prefix -> only before a number
    synsets: dict[str, frozenset[int]]  # word -> WordNet synset ids
    exception_bases: dict[str, tuple[str, ...]]  # irregular form -> base forms, in file order
    word_ids: dict[str, int]  # paraphrase-table token -> id
    phrase_hashes: np.ndarray  # sorted extend_phrase_hash() of every table phrase; a phrase's id is its position
    phrase_offsets: np.ndarray  # id -> start of its token ids in phrase_tokens (one more entry at the end)
    phrase_tokens: np.ndarray  # the token ids of all phrases, concatenated
    pair_keys: np.ndarray  # sorted int64 ref_id * n_phrases + paraphrase_id, one per table entry
    pair_entries: np.ndarray  # table line order of each key (the order the jar tries paraphrases in)
    max_phrase_length: int


PHRASE_HASH_MULTIPLIER = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def extend_phrase_hash(hashed: int, token_id: int) -> int:
    """Rolling 64-bit hash of a phrase's token ids (as int64), extended by one token."""
    value = (((hashed & _MASK64) * PHRASE_HASH_MULTIPLIER + token_id + 1) & _MASK64)
    return value - (1 << 64) if value >= 1 << 63 else value


def cache_dir() -> Path:
    root = Path(os.environ.get("VLREPRO_CACHE", Path.home() / ".cache" / "vlrepro"))
    return root / "meteor-1.5"


def _read_lines(data: bytes) -> list[str]:
    """Lines as java.io.BufferedReader splits them (\\n, \\r or \\r\\n)."""
    text = data.decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:-1] if text else []


def _function_words(jar: zipfile.ZipFile) -> frozenset[str]:
    return frozenset(_read_lines(jar.read("function/english.words")))


def _nonbreaking_prefixes(jar: zipfile.ZipFile) -> dict[str, bool]:
    prefixes: dict[str, bool] = {}
    for line in _read_lines(jar.read("nonbreaking/english.prefixes")):
        tokens = java_tokens(line)
        if not tokens or tokens[0].startswith("#"):
            continue
        prefixes[tokens[0]] = len(tokens) > 1 and tokens[1] == "#NUMERIC_ONLY#"
    return prefixes


def _synonyms(jar: zipfile.ZipFile) -> tuple[dict[str, frozenset[int]], dict[str, tuple[str, ...]]]:
    bases: dict[str, list[str]] = {}
    lines = _read_lines(jar.read("synonym/english.exceptions"))
    for base, forms in zip(lines[0::2], lines[1::2]):
        for form in java_tokens(forms):
            bases.setdefault(form, []).append(base)
    lines = _read_lines(jar.read("synonym/english.synsets"))
    synsets = {word: frozenset(int(t) for t in java_tokens(ids)) for word, ids in zip(lines[0::2], lines[1::2])}
    return synsets, {form: tuple(b) for form, b in bases.items()}


def _paraphrases(table: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Phrases (first-seen order), and per table entry the (reference, paraphrase) phrase ids."""
    ids: dict[str, int] = {}
    refs: list[int] = []
    pars: list[int] = []
    with gzip.open(table, "rb") as f:
        lines = io.TextIOWrapper(f, encoding="utf-8", newline=None)
        for _probability in lines:
            ref = " ".join(java_tokens(next(lines).rstrip("\n")))
            par = " ".join(java_tokens(next(lines).rstrip("\n")))
            refs.append(ids.setdefault(ref, len(ids)))
            pars.append(ids.setdefault(par, len(ids)))
    return list(ids), np.asarray(refs, dtype=np.int64), np.asarray(pars, dtype=np.int64)


def _build(jar_path: Path, out: Path) -> None:
    with zipfile.ZipFile(jar_path) as jar:
        synsets, bases = _synonyms(jar)
        small = {"function_words": _function_words(jar), "nonbreaking_prefixes": _nonbreaking_prefixes(jar),
                 "synsets": synsets, "exception_bases": bases}
    phrases, refs, pars = _paraphrases(jar_path.parent / "data" / "paraphrase-en.gz")
    word_ids: dict[str, int] = {}
    tokens = [[word_ids.setdefault(w, len(word_ids)) for w in p.split(" ")] for p in phrases]
    hashes = np.empty(len(phrases), dtype=np.int64)
    for i, ids in enumerate(tokens):
        hashed = 0
        for token in ids:
            hashed = extend_phrase_hash(hashed, token)
        hashes[i] = hashed
    by_hash = np.argsort(hashes, kind="stable")
    if np.any(np.diff(hashes[by_hash]) == 0):
        raise RuntimeError("two METEOR paraphrase phrases share a hash; change PHRASE_HASH_MULTIPLIER")
    new_id = np.empty_like(by_hash)
    new_id[by_hash] = np.arange(len(by_hash))
    lengths = np.array([len(tokens[i]) for i in by_hash], dtype=np.int64)
    np.save(out / "phrase_hashes.npy", hashes[by_hash])
    np.save(out / "phrase_offsets.npy", np.concatenate(([0], np.cumsum(lengths))))
    np.save(out / "phrase_tokens.npy", np.fromiter((t for i in by_hash for t in tokens[i]), dtype=np.int32,
                                                   count=int(lengths.sum())))
    keys = new_id[refs] * len(phrases) + new_id[pars]
    order = np.argsort(keys, kind="stable")
    np.save(out / "pair_keys.npy", keys[order])
    np.save(out / "pair_entries.npy", order.astype(np.int32))
    small["word_ids"] = word_ids
    small["max_phrase_length"] = int(lengths.max())
    with (out / "small.pkl").open("wb") as f:
        pickle.dump(small, f, protocol=pickle.HIGHEST_PROTOCOL)
    (out / "format.json").write_text(json.dumps({"format": _FORMAT, "jar_size": jar_path.stat().st_size}))


def _cache_is_current(target: Path, jar_path: Path) -> bool:
    stamp = target / "format.json"
    expected = {"format": _FORMAT, "jar_size": jar_path.stat().st_size}
    return stamp.is_file() and json.loads(stamp.read_text()) == expected


def _ensure_cache(jar_path: Path) -> Path:
    """The cache folder, built first if missing or stale (in a staging folder, renamed when complete)."""
    target = cache_dir()
    if _cache_is_current(target, jar_path):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".meteor-build-", dir=target.parent))
    try:
        _build(jar_path, staging)
        if not _cache_is_current(target, jar_path):  # else another process finished first: keep its copy
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@lru_cache(maxsize=1)
def load_resources() -> MeteorResources:
    """The resources of ``meteor-1.5.jar -l en`` (built into the cache on first use)."""
    from .meteor import meteor_jar

    root = _ensure_cache(meteor_jar())
    with (root / "small.pkl").open("rb") as f:
        small = pickle.load(f)
    arrays = {name: np.load(root / f"{name}.npy", mmap_mode="r")
              for name in ("phrase_hashes", "phrase_offsets", "phrase_tokens", "pair_keys", "pair_entries")}
    return MeteorResources(**arrays, **small)
