"""METEOR 1.5 (``-l en -norm``) in Python: matching, the aligner's beam search and the scoring, as the jar does.

Denkowski & Lavie (2014): candidate matches come from four stages (exact, Snowball stem, WordNet synonym,
paraphrase table); a beam search (width 40) over reference positions picks the alignment with the most matched
words (stage-weighted 1, .5, .5, .5), then the fewest chunks, then the smallest summed position distance; the
score is a parameterised harmonic mean of precision and recall (content/function words weighted by delta, stages
by the module weights) times a fragmentation penalty. Quirks of the jar kept for equality are marked "jar:".
"""

from __future__ import annotations

import gc
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from .meteor_normalize import java_tokens, java_trim, normalize_line
from .meteor_resources import PHRASE_HASH_MULTIPLIER, MeteorResources, load_resources
from .snowball_english import stem

__all__ = ["MeteorStats", "score_lines", "sentence_stats", "stats_score", "corpus_score", "stats_line"]

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


class _Match(NamedTuple):
    start: int  # in the reference (line 2)
    length: int
    match_start: int  # in the hypothesis (line 1)
    match_length: int
    module: int
    mask2: int  # reference words covered, as a bit mask
    mask1: int  # hypothesis words covered
    gain1: float  # search weight of the hypothesis words
    gain2: float


def _match(start: int, length: int, match_start: int, match_length: int, module: int) -> _Match:
    weight = SEARCH_WEIGHTS[module]
    return _Match(start, length, match_start, match_length, module, ((1 << length) - 1) << start,
                  ((1 << match_length) - 1) << match_start, match_length * weight, length * weight)


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
def _synonym_sets(word: str) -> frozenset[int]:
    """The word's WordNet synsets plus those of its base forms (irregular forms, else suffix rules)."""
    res = load_resources()
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


def _find_phrases(sentences: list[tuple[str, ...]], res: MeteorResources) -> list[list[tuple[int, int, int]]]:
    """Per sentence, (start, length, phrase id) of every span that is a paraphrase-table phrase, by start then
    length. All sentences at once: rolling hashes of every span, looked up and then checked token by token."""
    token_ids, owner, starts = [], [], []
    for s, words in enumerate(sentences):
        token_ids.extend(res.word_ids.get(w, -1) for w in words)
        token_ids.append(-1)  # spans never cross sentences
        owner.extend([s] * (len(words) + 1))
        starts.extend(range(len(words) + 1))
    tokens = np.array(token_ids, dtype=np.int64)
    n, n_phrases = len(tokens), len(res.phrase_hashes)
    valid = np.ones(n, dtype=bool)
    hashed = np.zeros(n, dtype=np.uint64)
    found = []
    for length in range(1, res.max_phrase_length + 1):
        last = np.full(n, -1, dtype=np.int64)
        last[: n - length + 1] = tokens[length - 1:]
        valid &= last >= 0
        if not valid.any():
            break
        hashed = hashed * np.uint64(PHRASE_HASH_MULTIPLIER) + (last + 1).astype(np.uint64)
        spans = np.flatnonzero(valid)
        span_hashes = hashed[spans].view(np.int64)
        ids = np.minimum(np.searchsorted(res.phrase_hashes, span_hashes), n_phrases - 1)
        hit = res.phrase_hashes[ids] == span_hashes
        spans, ids = spans[hit], ids[hit]
        offsets = res.phrase_offsets[ids]
        same = res.phrase_offsets[ids + 1] - offsets == length
        for k in range(length):
            same &= res.phrase_tokens[np.minimum(offsets + k, len(res.phrase_tokens) - 1)] == tokens[spans + k]
        found.append((spans[same], np.full(int(same.sum()), length), ids[same]))
    per_sentence: list[list[tuple[int, int, int]]] = [[] for _ in sentences]
    if found:
        spans, lengths, ids = (np.concatenate(parts) for parts in zip(*found))
        for span, length, pid in sorted(zip(spans.tolist(), lengths.tolist(), ids.tolist())):
            per_sentence[owner[span]].append((starts[span], length, pid))
    return per_sentence


@dataclass(frozen=True)
class _Sentence:
    """Everything the matchers need about one normalized sentence, computed once per distinct text."""

    words: tuple[str, ...]
    keys: tuple[int, ...]  # jar: words are compared by String.hashCode
    stem_keys: tuple[int, ...]
    synonyms: tuple[frozenset[int], ...]
    function: tuple[bool, ...]
    positions_by_key: dict[int, list[int]]
    positions_by_stem: dict[int, list[int]]
    phrases: tuple[tuple[int, int, int], ...]  # (start, length, phrase id)
    phrase_starts: dict[int, tuple[int, list[int]]]  # phrase id -> (length, starts)


def _positions(keys) -> dict[int, list[int]]:
    positions: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        positions.setdefault(key, []).append(i)
    return positions


def _phrase_starts(phrases: list[tuple[int, int, int]]) -> dict[int, tuple[int, list[int]]]:
    starts: dict[int, tuple[int, list[int]]] = {}
    for start, length, pid in phrases:
        starts.setdefault(pid, (length, []))[1].append(start)
    return starts


def _sentence(words: tuple[str, ...], phrases: list[tuple[int, int, int]], res: MeteorResources) -> _Sentence:
    keys = tuple(java_hash(w) for w in words)
    stem_keys = tuple(java_hash(stem(w)) for w in words)
    return _Sentence(words, keys, stem_keys, tuple(_synonym_sets(w) for w in words),
                     tuple(w.lower() in res.function_words for w in words), _positions(keys), _positions(stem_keys),
                     tuple(phrases), _phrase_starts(phrases))


def _paraphrase_pairs(phrase_ids: set[int], res: MeteorResources) -> dict[int, dict[int, list[int]]]:
    """The table entries between phrases of this corpus: source id -> target id -> entries, in file order."""
    if not phrase_ids:
        return {}
    ids = np.array(sorted(phrase_ids), dtype=np.int64)
    n_phrases = len(res.phrase_hashes)
    lo = np.searchsorted(res.pair_keys, ids * n_phrases)
    hi = np.searchsorted(res.pair_keys, (ids + 1) * n_phrases)
    counts = hi - lo
    rows = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    keys = np.asarray(res.pair_keys[rows])
    keep = np.isin(keys % n_phrases, ids)
    pairs: dict[int, dict[int, list[int]]] = {}
    for key, entry in zip(keys[keep].tolist(), np.asarray(res.pair_entries[rows[keep]]).tolist()):
        source, target = divmod(key, n_phrases)
        pairs.setdefault(source, {}).setdefault(target, []).append(entry)
    return pairs


def _paraphrase_matches(hyp: _Sentence, ref: _Sentence, pairs: dict[int, dict[int, list[int]]]) -> list[_Match]:
    """Paraphrase matches in the jar's order: reference phrases first (by start, length, table entry, hypothesis
    start), then hypothesis phrases (by start, length, entry, reference start)."""
    def found(source: _Sentence, target: _Sentence) -> list[tuple[int, int, int, int, int]]:
        hits = []
        for start, length, pid in source.phrases:
            targets = pairs.get(pid)
            if targets:
                for target_id in targets.keys() & target.phrase_starts.keys():
                    target_length, target_starts = target.phrase_starts[target_id]
                    for entry in targets[target_id]:
                        hits.extend((start, length, entry, t, target_length) for t in target_starts)
        hits.sort(key=lambda h: h[:4])
        return hits

    return ([_match(j, length, i, match_length, PARAPHRASE) for j, length, _, i, match_length in found(ref, hyp)]
            + [_match(j, length, i, match_length, PARAPHRASE) for i, match_length, _, j, length in found(hyp, ref)])


def _candidates(hyp: _Sentence, ref: _Sentence, n_modules: int, pairs: dict) -> _Candidates:
    """All matches of the stages in use, grouped by reference start in the order the jar adds them."""
    cand = _Candidates([[] for _ in ref.words], [0] * len(hyp.words), [0] * len(ref.words))
    for j, key in enumerate(ref.keys):
        for i in hyp.positions_by_key.get(key, ()):
            cand.add(_match(j, 1, i, 1, EXACT))
    if n_modules == 1:
        return cand
    for j, stem_key in enumerate(ref.stem_keys):
        for i in hyp.positions_by_stem.get(stem_key, ()):
            if hyp.keys[i] != ref.keys[j]:
                cand.add(_match(j, 1, i, 1, STEM))
    for j, synsets in enumerate(ref.synonyms):
        if synsets:
            for i, other in enumerate(hyp.synonyms):
                if hyp.keys[i] != ref.keys[j] and not synsets.isdisjoint(other):
                    cand.add(_match(j, 1, i, 1, SYNONYM))
    for m in _paraphrase_matches(hyp, ref, pairs):
        cand.add(m)
    return cand


def _definite_matches(cand: _Candidates) -> list[_Match | None]:
    """Matches that are the only candidate for all their words are fixed before the search."""
    fixed: list[_Match | None] = [None] * len(cand.by_start)
    for j, matches in enumerate(cand.by_start):
        if len(matches) == 1:
            m = matches[0]
            if all(cand.coverage2[j + k] == 1 for k in range(m.length)) and all(
                    cand.coverage1[m.match_start + k] == 1 for k in range(m.match_length)):
                fixed[j] = m
    return fixed


# A partial alignment is a list (mutated in place where the jar mutates its PartialAlignment objects).
NEG_SCORE, CHUNKS, DISTANCE, M1, M2, IDX, LAST_END, USED1, USED2, CHOSEN = range(10)
# Constants.PARTIAL_COMPARE_TOTAL: more (search-weighted) matched words, then fewer chunks, then less distance
_rank = itemgetter(NEG_SCORE, CHUNKS, DISTANCE)


def _take(path: list, m: _Match) -> None:
    # jar: int += double truncates, so a one-word stage-2..4 match adds nothing to the search score
    path[M1] = int(path[M1] + m.gain1)
    path[M2] = int(path[M2] + m.gain2)
    path[NEG_SCORE] = -(path[M1] + path[M2])
    if path[LAST_END] != -1 and m.match_start != path[LAST_END]:
        path[CHUNKS] += 1
    path[IDX] = m.start + m.length
    path[LAST_END] = m.match_start + m.match_length


def _beam_search(cand: _Candidates, fixed: list[_Match | None]) -> list[_Match | None]:
    """Aligner.resolve: left to right over reference positions, keeping the best BEAM_SIZE partial alignments."""
    n2 = len(fixed)
    used1 = used2 = 0
    for m in fixed:
        if m is not None:
            used1 |= m.mask1
            used2 |= m.mask2
    next_paths = [[0, 0, 0, 0, 0, 0, -1, used1, used2, None]]
    for current in range(n2 + 1):
        paths = sorted(next_paths, key=_rank)
        next_paths = []
        for path in paths[:BEAM_SIZE]:
            if current == n2:
                if path[LAST_END] != -1:
                    path[CHUNKS] += 1
                next_paths.append(path)
                continue
            if path[USED2] >> current & 1:
                if current < path[IDX]:
                    next_paths.append(path)
                elif fixed[path[IDX]] is not None:  # a chosen match always moves IDX past its words
                    m = fixed[path[IDX]]
                    _take(path, m)
                    path[DISTANCE] += abs(m.start - m.match_start)
                    next_paths.append(path)
                continue
            for m in cand.by_start[current]:
                if path[USED2] & m.mask2 or path[USED1] & m.mask1:
                    continue
                extended = path[:]
                extended[USED2] |= m.mask2
                extended[USED1] |= m.mask1
                extended[CHOSEN] = (m, path[CHOSEN])
                _take(extended, m)
                path[DISTANCE] += abs(m.start - m.match_start)  # jar: the distance goes to the parent path
                next_paths.append(extended)
            if path[LAST_END] != -1:
                path[CHUNKS] += 1
                path[LAST_END] = -1
            path[IDX] += 1
            next_paths.append(path)
        if not next_paths:
            next_paths.append(paths[0])
    matches = list(fixed)
    chosen = min(next_paths, key=_rank)[CHOSEN]
    while chosen is not None:
        m, chosen = chosen
        matches[m.start] = m
    return matches


def _all_fixed(cand: _Candidates, fixed: list[_Match | None]) -> bool:
    return sum(len(c) for c in cand.by_start) == sum(m is not None for m in fixed)


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


def align_stats(hyp: _Sentence, ref: _Sentence, pairs: dict) -> MeteorStats:
    """Statistics of the jar's best alignment of a hypothesis to a reference."""
    n_modules = 1 if hyp.keys == ref.keys else 4  # jar: identical sentences use exact matching only
    cand = _candidates(hyp, ref, n_modules, pairs)
    fixed = _definite_matches(cand)
    matches = fixed if _all_fixed(cand, fixed) else _beam_search(cand, fixed)
    counts = [[0, 0, 0, 0] for _ in range(4)]
    for m in matches:
        if m is None:
            continue
        for k in range(m.match_length):
            counts[m.module][2 if hyp.function[m.match_start + k] else 0] += 1
        for k in range(m.length):
            counts[m.module][3 if ref.function[m.start + k] else 1] += 1
    return MeteorStats(len(hyp.words), len(ref.words), sum(hyp.function), sum(ref.function),
                       tuple(tuple(c) for c in counts), _count_chunks(matches))


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


def reset_caches() -> None:
    """Forget the loaded resources and the per-word caches, as in a fresh process (for timing cold starts)."""
    load_resources.cache_clear()
    for cached in (java_hash, stem, _synonym_sets):
        cached.cache_clear()


def _parse_score_line(line: str) -> tuple[str, list[str]]:
    """Hypothesis and references of a SCORE line, split and trimmed as the jar does."""
    parts = _SCORE_SEPARATOR.split(line)
    while parts and parts[-1] == "":  # Java's String.split drops trailing empty strings
        parts.pop()
    if len(parts) < 3:
        raise ValueError(f"a METEOR SCORE line needs a hypothesis and at least one reference: {line!r}")
    return java_trim(parts[-1]), [java_trim(p) for p in parts[1:-1]]


def score_lines(lines: list[str]) -> list[MeteorStats]:
    """What the jar answers to each ``SCORE ||| ref ||| ... ||| hypothesis`` line: the statistics of the
    reference whose alignment scores best (the first of equals)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the scoring allocates many small acyclic objects; collections would scan the resources each time
    try:
        return _score_lines(lines)
    finally:
        if gc_was_enabled:
            gc.enable()


def _score_lines(lines: list[str]) -> list[MeteorStats]:
    res = load_resources()
    items = [_parse_score_line(line) for line in lines]
    texts = list(dict.fromkeys(text for hyp, refs in items for text in (hyp, *refs)))
    words = [tuple(java_tokens(normalize_line(t, res.nonbreaking_prefixes))) for t in texts]
    sentences = {t: _sentence(w, p, res) for t, w, p in zip(texts, words, _find_phrases(words, res))}
    pairs = _paraphrase_pairs({pid for s in sentences.values() for _, _, pid in s.phrases}, res)
    out = []
    for hyp, refs in items:
        best, best_score = None, -1.0
        for ref in refs:
            stats = align_stats(sentences[hyp], sentences[ref], pairs)
            score = stats_score(stats)
            if score > best_score:
                best, best_score = stats, score
        out.append(best)
    return out


def sentence_stats(hypothesis: str, references: list[str]) -> MeteorStats:
    from .meteor import score_line

    return score_lines([score_line(hypothesis, references)])[0]
