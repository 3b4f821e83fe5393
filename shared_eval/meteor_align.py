"""METEOR 1.5 (``-l en -norm``) in Python: matching, the aligner's beam search and the scoring, as the jar does.

Denkowski & Lavie (2014): candidate matches come from four stages (exact, Snowball stem, WordNet synonym,
paraphrase table); a beam search (width 40) over reference positions picks the alignment with the most matched
words (stage-weighted 1, .5, .5, .5), then the fewest chunks, then the smallest summed position distance; the
score is a parameterised harmonic mean of precision and recall (content/function words weighted by delta, stages
by the module weights) times a fragmentation penalty. Quirks of the jar kept for equality are marked "jar:".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .meteor_normalize import java_tokens, java_trim, normalize_line
from .meteor_resources import MeteorResources, load_resources
from .snowball_english import stem

__all__ = ["MeteorStats", "sentence_stats", "score_line_stats", "stats_score", "corpus_score", "stats_line"]

ALPHA, BETA, GAMMA, DELTA = 0.85, 0.2, 0.6, 0.75  # Constants.PARAM_RANK, English (the default task)
MODULE_WEIGHTS = (1.0, 0.6, 0.8, 0.6)  # Constants.WEIGHT_RANK, English: exact, stem, synonym, paraphrase
SEARCH_WEIGHTS = (1.0, 0.5, 0.5, 0.5)  # what MeteorScorer gives the aligner for ranking partial alignments
BEAM_SIZE = 40
EXACT, STEM, SYNONYM, PARAPHRASE = range(4)
_SCORE_SEPARATOR = re.compile(r"\|\|\|")


@lru_cache(maxsize=1 << 18)
def java_hash(word: str) -> int:
    """``String.hashCode()`` (over UTF-16 units): the jar compares words and stems by it."""
    h = 0
    for unit in memoryview(word.encode("utf-16-le", "surrogatepass")).cast("H"):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h


@dataclass(frozen=True)
class _Match:
    start: int  # in the reference (line 2)
    length: int
    match_start: int  # in the hypothesis (line 1)
    match_length: int
    module: int
    mask2: int = field(compare=False)
    mask1: int = field(compare=False)


def _match(start: int, length: int, match_start: int, match_length: int, module: int) -> _Match:
    return _Match(start, length, match_start, match_length, module,
                  ((1 << length) - 1) << start, ((1 << match_length) - 1) << match_start)


class _Path:
    """A partial alignment; mutated in place as the jar does with its PartialAlignment objects."""

    __slots__ = ("matches", "match_count", "matches1", "matches2", "all1", "all2", "chunks", "idx",
                 "last_match_end", "distance", "used1", "used2")

    def __init__(self, n2: int) -> None:
        self.matches: list[_Match | None] = [None] * n2
        self.match_count = self.matches1 = self.matches2 = self.all1 = self.all2 = 0
        self.chunks = self.idx = self.distance = 0
        self.last_match_end = -1
        self.used1 = self.used2 = 0

    def copy(self) -> "_Path":
        other = _Path.__new__(_Path)
        for name in _Path.__slots__:
            setattr(other, name, getattr(self, name))
        other.matches = list(self.matches)
        return other

    def take(self, m: _Match) -> None:
        """Count match ``m`` (not its distance: the caller adds that, to the path the jar adds it to)."""
        self.match_count += 1
        # jar: int += double truncates, so a one-word stage-2..4 match adds nothing to the search score
        self.matches1 = int(self.matches1 + m.match_length * SEARCH_WEIGHTS[m.module])
        self.matches2 = int(self.matches2 + m.length * SEARCH_WEIGHTS[m.module])
        self.all1 += m.match_length
        self.all2 += m.length
        if self.last_match_end != -1 and m.match_start != self.last_match_end:
            self.chunks += 1
        self.idx = m.start + m.length
        self.last_match_end = m.match_start + m.match_length

    def sort_key(self) -> tuple[int, int, int]:
        return -(self.matches1 + self.matches2), self.chunks, self.distance


@dataclass
class _Candidates:
    by_start: list[list[_Match]]
    coverage1: list[int]
    coverage2: list[int]

    def add(self, m: _Match) -> None:
        self.by_start[m.start].append(m)
        for k in range(m.match_length):
            self.coverage1[m.match_start + k] += 1
        for k in range(m.length):
            self.coverage2[m.start + k] += 1


@lru_cache(maxsize=1 << 18)
def _stem_key(word: str) -> int:
    return java_hash(stem(word))


def _synonym_sets(word: str, res: MeteorResources) -> frozenset[int]:
    own = res.synsets.get(word, frozenset())
    bases = res.exception_bases.get(word)
    if bases is not None:
        related = frozenset().union(*(res.synsets.get(b, frozenset()) for b in bases))
    else:
        related = res.synsets.get(_morph(word, res), frozenset())
    return own | related


_MORPH_RULES = (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                ("men", "man"), ("ies", "y"), ("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"),
                ("ed", ""), ("ing", "e"), ("ing", ""), ("er", ""), ("est", ""), ("er", "e"), ("est", "e"))


def _morph(word: str, res: MeteorResources) -> str:
    """WordNet-style detachment (SynonymDictionary.morph): the first suffix rule giving a known word."""
    if word.endswith("ss") or len(word.encode("utf-16-le", "surrogatepass")) <= 4:
        return word
    for suffix, replacement in _MORPH_RULES:
        if word.endswith(suffix):
            candidate = word[: len(word) - len(suffix)] + replacement
            if candidate in res.synsets:
                return candidate
    return ""


def _phrases(words: list[str], res: MeteorResources) -> list[tuple[int, int, int]]:
    """(start, length, phrase id) of every span that is a paraphrase-table phrase, by start then length."""
    found = []
    for start in range(len(words)):
        for length in range(1, min(res.max_phrase_length, len(words) - start) + 1):
            pid = res.phrase_ids.get(" ".join(words[start:start + length]))
            if pid is not None:
                found.append((start, length, pid))
    return found


def _paraphrase_hits(sources, targets, res: MeteorResources) -> list[tuple[int, int, int, int, int]]:
    """(source start, source length, table entry, target start, target length) for each table entry
    (source phrase -> target phrase) found, in the jar's order: source start, length, entry, target start."""
    if not sources or not targets:
        return []
    n_phrases = len(res.phrase_lengths)
    src = np.array([s[2] for s in sources], dtype=np.int64)
    tgt = np.array([t[2] for t in targets], dtype=np.int64)
    keys = (src[:, None] * n_phrases + tgt[None, :]).ravel()
    lo = np.searchsorted(res.pair_keys, keys, side="left")
    hi = np.searchsorted(res.pair_keys, keys, side="right")
    hits = []
    for flat in np.flatnonzero(hi > lo).tolist():
        s, t = divmod(flat, len(targets))
        for entry in res.pair_entries[lo[flat]:hi[flat]].tolist():
            hits.append((sources[s][0], sources[s][1], entry, targets[t][0], targets[t][1]))
    hits.sort(key=lambda h: (h[0], h[1], h[2], h[3]))
    return hits


def _candidates(words1: list[str], words2: list[str], keys1: list[int], keys2: list[int], n_modules: int,
                res: MeteorResources) -> _Candidates:
    cand = _Candidates([[] for _ in words2], [0] * len(words1), [0] * len(words2))
    pairs = [(j, i) for j in range(len(words2)) for i in range(len(words1))]
    for j, i in pairs:
        if keys1[i] == keys2[j]:
            cand.add(_match(j, 1, i, 1, EXACT))
    if n_modules > STEM:
        stems1 = [_stem_key(w) for w in words1]
        stems2 = [_stem_key(w) for w in words2]
        for j, i in pairs:
            if stems1[i] == stems2[j] and keys1[i] != keys2[j]:
                cand.add(_match(j, 1, i, 1, STEM))
    if n_modules > SYNONYM:
        syn1 = [_synonym_sets(w, res) for w in words1]
        syn2 = [_synonym_sets(w, res) for w in words2]
        for j, i in pairs:
            if keys1[i] != keys2[j] and not syn1[i].isdisjoint(syn2[j]):
                cand.add(_match(j, 1, i, 1, SYNONYM))
    if n_modules > PARAPHRASE:
        phrases1, phrases2 = _phrases(words1, res), _phrases(words2, res)
        for j, length, _, i, match_length in _paraphrase_hits(phrases2, phrases1, res):
            cand.add(_match(j, length, i, match_length, PARAPHRASE))
        for i, match_length, _, j, length in _paraphrase_hits(phrases1, phrases2, res):
            cand.add(_match(j, length, i, match_length, PARAPHRASE))
    return cand


def _definite_start(cand: _Candidates, n2: int) -> _Path:
    """Matches that are the only candidate for their words are fixed before the search."""
    path = _Path(n2)
    for j, matches in enumerate(cand.by_start):
        if len(matches) != 1:
            continue
        m = matches[0]
        if all(cand.coverage2[j + k] == 1 for k in range(m.length)) and all(
                cand.coverage1[m.match_start + k] == 1 for k in range(m.match_length)):
            path.matches[j] = m
            path.used2 |= m.mask2
            path.used1 |= m.mask1
    return path


def _beam_search(cand: _Candidates, start: _Path, n2: int) -> _Path:
    next_paths = [start]
    for current in range(n2 + 1):
        paths = sorted(next_paths, key=_Path.sort_key)
        next_paths = []
        for path in paths[:BEAM_SIZE]:
            if current == n2:
                if path.last_match_end != -1:
                    path.chunks += 1
                next_paths.append(path)
                continue
            if path.used2 >> current & 1:
                if current < path.idx:
                    next_paths.append(path)
                elif path.matches[path.idx] is not None:
                    m = path.matches[path.idx]
                    path.take(m)
                    path.distance += abs(m.start - m.match_start)
                    next_paths.append(path)
                continue
            for m in cand.by_start[current]:
                if path.used2 & m.mask2 or path.used1 & m.mask1:
                    continue
                extended = path.copy()
                extended.used2 |= m.mask2
                extended.used1 |= m.mask1
                extended.matches[current] = m
                extended.take(m)
                path.distance += abs(m.start - m.match_start)  # jar: the distance goes to the parent path
                next_paths.append(extended)
            if path.last_match_end != -1:
                path.chunks += 1
                path.last_match_end = -1
            path.idx += 1
            next_paths.append(path)
        if not next_paths:
            next_paths.append(paths[0])
    return min(next_paths, key=_Path.sort_key)


def _count_chunks(matches: list[_Match | None]) -> int:
    chunks, idx, last_match_end = 0, 0, -1
    while idx < len(matches):
        m = matches[idx]
        if m is None:
            if last_match_end != -1:
                chunks += 1
                last_match_end = -1
            idx += 1
        else:
            if last_match_end != -1 and m.match_start != last_match_end:
                chunks += 1
            idx = m.start + m.length
            last_match_end = m.match_start + m.match_length
    return chunks + (last_match_end != -1)


@dataclass
class MeteorStats:
    """The jar's sufficient statistics (word-level): what a SCORE line returns."""

    test_length: int
    reference_length: int
    test_function_words: int
    reference_function_words: int
    stage_matches: tuple[tuple[int, int, int, int], ...]  # per stage: test content, ref content, test function, ref function
    chunks: int

    @property
    def test_matches(self) -> int:
        return sum(s[0] + s[2] for s in self.stage_matches)

    @property
    def reference_matches(self) -> int:
        return sum(s[1] + s[3] for s in self.stage_matches)


def align_stats(words1: list[str], words2: list[str], res: MeteorResources) -> MeteorStats:
    """Statistics of the jar's best alignment of hypothesis ``words1`` to reference ``words2``."""
    keys1 = [java_hash(w) for w in words1]
    keys2 = [java_hash(w) for w in words2]
    n_modules = 1 if keys1 == keys2 else 4  # jar: identical sentences use exact matching only
    cand = _candidates(words1, words2, keys1, keys2, n_modules, res)
    best = _beam_search(cand, _definite_start(cand, len(words2)), len(words2))
    function1 = [w.lower() in res.function_words for w in words1]
    function2 = [w.lower() in res.function_words for w in words2]
    counts = [[0, 0, 0, 0] for _ in range(4)]
    for m in best.matches:
        if m is None:
            continue
        for k in range(m.match_length):
            counts[m.module][2 if function1[m.match_start + k] else 0] += 1
        for k in range(m.length):
            counts[m.module][3 if function2[m.start + k] else 1] += 1
    return MeteorStats(len(words1), len(words2), sum(function1), sum(function2),
                       tuple(tuple(c) for c in counts), _count_chunks(best.matches))


def _java_div(a: float, b: float) -> float:
    """IEEE division as Java does it (inf / NaN instead of ZeroDivisionError)."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def stats_score(stats: MeteorStats) -> float:
    """MeteorScorer.computeMetrics: the score of one item's (or the summed) statistics."""
    test_weighted_length = (DELTA * (stats.test_length - stats.test_function_words)
                            + (1.0 - DELTA) * stats.test_function_words)
    ref_weighted_length = (DELTA * (stats.reference_length - stats.reference_function_words)
                           + (1.0 - DELTA) * stats.reference_function_words)
    test_weighted = ref_weighted = 0.0
    for weight, stage in zip(MODULE_WEIGHTS, stats.stage_matches):
        test_weighted += stage[0] * weight * DELTA
    for weight, stage in zip(MODULE_WEIGHTS, stats.stage_matches):
        ref_weighted += stage[1] * weight * DELTA
    for weight, stage in zip(MODULE_WEIGHTS, stats.stage_matches):
        test_weighted += stage[2] * weight * (1.0 - DELTA)
    for weight, stage in zip(MODULE_WEIGHTS, stats.stage_matches):
        ref_weighted += stage[3] * weight * (1.0 - DELTA)
    precision = _java_div(test_weighted, test_weighted_length)
    recall = _java_div(ref_weighted, ref_weighted_length)
    f_mean = _java_div(1.0, _java_div(1.0 - ALPHA, precision) + _java_div(ALPHA, recall))
    if _is_perfect(stats):
        frag = 0.0
    else:
        frag = _java_div(float(stats.chunks), (stats.test_matches + stats.reference_matches) / 2)
    penalty = GAMMA * frag ** BETA if not math.isnan(frag) else math.nan
    score = f_mean * (1.0 - penalty)
    return 0.0 if math.isnan(score) else max(score, 0.0)


def _is_perfect(stats: MeteorStats) -> bool:
    return (stats.test_matches == stats.test_length and stats.reference_matches == stats.reference_length
            and stats.chunks == 1)


def corpus_score(items: list[MeteorStats]) -> float:
    """The EVAL answer's last line: the score of the summed statistics (MeteorStats.addStats)."""
    stages = [[0, 0, 0, 0] for _ in range(4)]
    for stats in items:
        for total, stage in zip(stages, stats.stage_matches):
            for k in range(4):
                total[k] += stage[k]
    total = MeteorStats(
        sum(s.test_length for s in items), sum(s.reference_length for s in items),
        sum(s.test_function_words for s in items), sum(s.reference_function_words for s in items),
        tuple(tuple(s) for s in stages),
        sum(s.chunks for s in items if not _is_perfect(s)),  # jar: perfect items add no chunks
    )
    return stats_score(total)


def stats_line(stats: MeteorStats) -> str:
    """The jar's SCORE answer: the statistics as Java prints doubles, space-separated."""
    values = [stats.test_length, stats.reference_length, stats.test_function_words,
              stats.reference_function_words]
    for stage in stats.stage_matches:
        values.extend(stage)
    values += [stats.chunks, stats.test_matches, stats.reference_matches]
    return " ".join(_java_double(v) for v in values)


def _java_double(value: int) -> str:
    if value < 10_000_000:
        return f"{value}.0"
    digits = str(value).rstrip("0")
    return f"{digits[0]}.{digits[1:] or '0'}E{len(str(value)) - 1}"


@lru_cache(maxsize=1 << 16)
def _normalized_words(text: str) -> tuple[str, ...]:
    return tuple(java_tokens(normalize_line(text, load_resources().nonbreaking_prefixes)))


def score_line_stats(line: str) -> MeteorStats:
    """What the jar answers to ``SCORE ||| ref ||| ... ||| hypothesis`` (the best reference's statistics)."""
    parts = _SCORE_SEPARATOR.split(line)
    while parts and parts[-1] == "":  # Java's String.split drops trailing empty strings
        parts.pop()
    if len(parts) < 3:
        raise ValueError(f"a METEOR SCORE line needs a hypothesis and at least one reference: {line!r}")
    res = load_resources()
    hypothesis = list(_normalized_words(java_trim(parts[-1])))
    best, best_score = None, -1.0
    for reference in parts[1:-1]:
        stats = align_stats(hypothesis, list(_normalized_words(java_trim(reference))), res)
        score = stats_score(stats)
        if score > best_score:
            best, best_score = stats, score
    return best


def sentence_stats(hypothesis: str, references: list[str]) -> MeteorStats:
    from .meteor import score_line

    return score_line_stats(score_line(hypothesis, references))
