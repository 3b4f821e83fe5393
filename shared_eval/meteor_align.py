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


# A candidate match is a tuple. WORDS: the words it covers as one bit mask, reference positions in the low bits
# and hypothesis positions above them (hypothesis position i is bit reference length + i).
WORDS, SCORE_DELTA, DISTANCE, MATCH_START, MATCH_END, REF_END, START, MODULE = range(8)
# A partial alignment's rank (Constants.PARTIAL_COMPARE_TOTAL: more search-weighted matched words, then fewer
# chunks, then less distance) folded into one integer, -score * _SCORE_UNIT + chunks * _CHUNK_UNIT + distance,
# so that every update is an addition and partial alignments sort by one int.
_CHUNK_UNIT = 1 << 32
_SCORE_UNIT = 1 << 64


def _match(start: int, length: int, match_start: int, match_length: int, module: int, ref_length: int) -> tuple:
    weight = SEARCH_WEIGHTS[module]
    # jar: int += double truncates, so a one-word stage-2..4 match adds nothing to the search score
    score = int(match_length * weight) + int(length * weight)
    words = ((1 << length) - 1) << start | ((1 << match_length) - 1) << (match_start + ref_length)
    return (words, -score * _SCORE_UNIT, abs(start - match_start), match_start, match_start + match_length,
            start + length, start, module)


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
    table_ids = {w: res.word_ids.get(w, -1) for words in sentences for w in words}
    table_ids[""] = -1  # between sentences: spans never cross them
    flat = [w for words in sentences for w in (*words, "")]
    tokens = np.fromiter(map(table_ids.__getitem__, flat), dtype=np.int64, count=len(flat))
    sentence_ends = np.cumsum([len(words) + 1 for words in sentences])
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
        # each distinct span once, in sorted order (binary searches in the 2.6 M hashes then stay local)
        distinct, inverse = np.unique(hashed[spans].view(np.int64), return_inverse=True)
        ids = np.minimum(np.searchsorted(res.phrase_hashes, distinct), n_phrases - 1)
        hit = (res.phrase_hashes[ids] == distinct)[inverse]
        spans, ids = spans[hit], ids[inverse[hit]]
        offsets = res.phrase_offsets[ids]
        same = res.phrase_offsets[ids + 1] - offsets == length
        for k in range(length):
            same &= res.phrase_tokens[np.minimum(offsets + k, len(res.phrase_tokens) - 1)] == tokens[spans + k]
        found.append((spans[same], np.full(int(same.sum()), length), ids[same]))
    if not found:
        return [[] for _ in sentences]
    spans, lengths, ids = (np.concatenate(parts) for parts in zip(*found))
    order = np.lexsort((lengths, spans))
    spans, lengths, ids = spans[order], lengths[order], ids[order]
    owner = np.searchsorted(sentence_ends, spans, side="right")
    starts = spans - (sentence_ends - [len(words) + 1 for words in sentences])[owner]
    bounds = np.searchsorted(owner, np.arange(len(sentences) + 1)).tolist()
    triples = list(zip(starts.tolist(), lengths.tolist(), ids.tolist()))
    return [triples[bounds[s]:bounds[s + 1]] for s in range(len(sentences))]


class _Vocabulary:
    """What the matchers need about each distinct word of a call, computed once per word."""

    def __init__(self, words: list[str], res: MeteorResources) -> None:
        self.ids = {w: i for i, w in enumerate(words)}
        self.keys = [java_hash(w) for w in words]  # jar: words are compared by String.hashCode
        self.stem_keys = [java_hash(stem(w)) for w in words]
        self.function = [w.lower() in res.function_words for w in words]
        synsets = [_synonym_sets(w) for w in words]
        by_synset: dict[int, list[int]] = {}
        for word_id, word_synsets in enumerate(synsets):
            for synset in word_synsets:
                by_synset.setdefault(synset, []).append(word_id)
        # the other words of the call sharing a synset with each word (the synonym stage's relation)
        self.synonyms = [frozenset(other for synset in word_synsets for other in by_synset[synset] if other != word_id)
                         for word_id, word_synsets in enumerate(synsets)]


@dataclass(slots=True)
class _Sentence:
    """Everything the matchers need about one normalized sentence, computed once per distinct text."""

    keys: tuple[int, ...]  # jar: words are compared by String.hashCode
    function_mask: int  # function words, as a bit mask of positions
    positions_by_key: dict[int, list[int]]
    positions_by_stem: dict[int, list[int]]
    positions_by_word: dict[int, list[int]]  # by word id (_Vocabulary)
    synonym_positions: dict[int, list[int]]  # word id -> the positions of this sentence's synonyms of it
    phrase_starts: dict[int, tuple[int, list[int]]]  # phrase id -> (length, starts)
    phrase_ids: frozenset[int]
    # paraphrase-table target id -> (start, length, table entries) of this sentence's phrases paired with it
    phrases_by_target: dict[int, list[tuple[int, int, list[int]]]]
    paraphrase_targets: frozenset[int]


def _positions(keys) -> dict[int, list[int]]:
    positions: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        if key in positions:
            positions[key].append(i)
        else:
            positions[key] = [i]
    return positions


def _phrase_starts(phrases: list[tuple[int, int, int]]) -> dict[int, tuple[int, list[int]]]:
    starts: dict[int, tuple[int, list[int]]] = {}
    for start, length, pid in phrases:
        starts.setdefault(pid, (length, []))[1].append(start)
    return starts


def _sentence(words: tuple[str, ...], phrases: list[tuple[int, int, int]], vocabulary: _Vocabulary,
              pairs: dict[int, dict[int, list[int]]]) -> _Sentence:
    ids = [vocabulary.ids[w] for w in words]
    keys = tuple(vocabulary.keys[i] for i in ids)
    function_mask = sum(1 << k for k, i in enumerate(ids) if vocabulary.function[i])
    synonym_positions: dict[int, list[int]] = {}
    for position, word_id in enumerate(ids):
        for other in vocabulary.synonyms[word_id]:
            synonym_positions.setdefault(other, []).append(position)
    phrases_by_target: dict[int, list[tuple[int, int, list[int]]]] = {}
    for start, length, pid in phrases:
        for target_id, entries in pairs.get(pid, {}).items():
            phrases_by_target.setdefault(target_id, []).append((start, length, entries))
    return _Sentence(keys, function_mask, _positions(keys),
                     _positions([vocabulary.stem_keys[i] for i in ids]), _positions(ids), synonym_positions,
                     _phrase_starts(phrases), frozenset(pid for _, _, pid in phrases), phrases_by_target,
                     frozenset(phrases_by_target))


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


def _paraphrase_hits(source: _Sentence, target: _Sentence) -> list[tuple[int, int, int, int, int]]:
    """(source start, length, table entry, target start, target length) of the table's pairs from a source
    phrase to a target phrase, sorted (the first four fields are never all equal: an entry is one pair)."""
    if source.paraphrase_targets.isdisjoint(target.phrase_ids):
        return []
    hits = []
    for target_id in source.paraphrase_targets & target.phrase_ids:
        target_length, target_starts = target.phrase_starts[target_id]
        for start, length, entries in source.phrases_by_target[target_id]:
            for entry in entries:
                hits.extend([(start, length, entry, t, target_length) for t in target_starts])
    hits.sort()
    return hits


def _one_word_matches(start: int, match_starts, module: int, ref_length: int) -> list[tuple]:
    score_delta = -2 * int(SEARCH_WEIGHTS[module]) * _SCORE_UNIT  # as _match: only exact matches count
    ref_bit, end = 1 << start, start + 1
    return [(ref_bit | 1 << (i + ref_length), score_delta, abs(start - i), i, i + 1, end, start, module)
            for i in match_starts]


def _candidates(hyp: _Sentence, ref: _Sentence, n_modules: int) -> list[list[tuple]]:
    """All matches of the stages in use, by reference start, in the order the jar adds them: exact, stem and
    synonym matches (each by hypothesis position), then paraphrases found from reference phrases, then those
    found from hypothesis phrases. Words are paired through the sentences' shared keys, stems and synonyms."""
    n2 = len(ref.keys)
    by_start: list[list[tuple]] = [[] for _ in range(n2)]
    ref_exact, hyp_exact = ref.positions_by_key, hyp.positions_by_key
    for key in ref_exact.keys() & hyp_exact.keys():
        hyp_positions = hyp_exact[key]
        for j in ref_exact[key]:
            by_start[j] = _one_word_matches(j, hyp_positions, EXACT, n2)  # the first matches of j
    if n_modules == 1:
        return by_start
    ref_keys, hyp_keys = ref.keys, hyp.keys
    ref_stems, hyp_stems = ref.positions_by_stem, hyp.positions_by_stem
    for stem_key in ref_stems.keys() & hyp_stems.keys():
        hyp_positions = hyp_stems[stem_key]
        for j in ref_stems[stem_key]:
            key = ref_keys[j]
            different = [i for i in hyp_positions if hyp_keys[i] != key]
            if different:
                by_start[j].extend(_one_word_matches(j, different, STEM, n2))
    hyp_words, ref_synonyms = hyp.positions_by_word, ref.synonym_positions
    common = ref_synonyms.keys() & hyp_words.keys()
    if common:
        for j, i in sorted([(j, i) for w in common for j in ref_synonyms[w] for i in hyp_words[w]]):
            if hyp_keys[i] != ref_keys[j]:
                by_start[j].extend(_one_word_matches(j, (i,), SYNONYM, n2))
    for j, length, _, i, match_length in _paraphrase_hits(ref, hyp):
        by_start[j].append(_match(j, length, i, match_length, PARAPHRASE, n2))
    for i, match_length, _, j, length in _paraphrase_hits(hyp, ref):
        by_start[j].append(_match(j, length, i, match_length, PARAPHRASE, n2))
    return by_start


def _definite_matches(by_start: list[list[tuple]]) -> list[tuple | None]:
    """Matches that are the only candidate for all their words are fixed before the search."""
    once = twice = 0
    for matches in by_start:
        for m in matches:
            twice |= once & m[WORDS]
            once |= m[WORDS]
    return [matches[0] if len(matches) == 1 and not matches[0][WORDS] & twice else None for matches in by_start]


_rank = itemgetter(0)


def _beam_search(by_start: list[list[tuple]], fixed: list[tuple | None]) -> list[tuple | None]:
    """Aligner.resolve: left to right over reference positions, keeping the best BEAM_SIZE partial alignments.

    A partial alignment is [rank, words used (as a match's WORDS), hypothesis end of its last match (-1 outside a
    chunk), its chosen matches as a linked list]. The jar also tracks the next reference index; here it is
    implied: fixed matches cover words that no other candidate covers, so every partial alignment takes a fixed
    match at its first word and steps over the rest, and a word covered by a chosen match is stepped over."""
    n2 = len(fixed)
    used = 0
    for m in fixed:
        if m is not None:
            used |= m[WORDS]
    fixed_words = used
    paths = [[0, used, -1, None]]
    quiet = True  # no partial alignment is inside a chunk: a word without candidates then changes nothing
    for current in range(n2):
        bit = 1 << current
        if fixed_words & bit:
            quiet = False
            m = fixed[current]
            if m is not None:
                step, match_start, match_end = m[SCORE_DELTA] + m[DISTANCE], m[MATCH_START], m[MATCH_END]
                for path in paths:
                    if path[2] != -1 and match_start != path[2]:
                        path[0] += _CHUNK_UNIT
                    path[0] += step
                    path[2] = match_end
            # else inside a fixed match: nothing changes
        elif not by_start[current]:
            if quiet:
                continue
            quiet = True
            for path in paths:
                if path[2] != -1:
                    if path[1] & bit:
                        quiet = False
                    else:
                        path[0] += _CHUNK_UNIT
                        path[2] = -1
        else:
            quiet = False
            next_paths = []
            add = next_paths.append
            candidates = by_start[current]
            for path in paths:
                rank, used, last_end, chosen = path
                if used & bit:
                    add(path)
                    continue
                for m in candidates:
                    if used & m[0]:  # WORDS
                        continue
                    if last_end != -1 and m[3] != last_end:  # MATCH_START
                        add([rank + m[1] + _CHUNK_UNIT, used | m[0], m[4], (m, chosen)])  # SCORE_DELTA, MATCH_END
                    else:
                        add([rank + m[1], used | m[0], m[4], (m, chosen)])
                    rank += m[2]  # DISTANCE; jar: the distance goes to the parent path
                if last_end != -1:
                    rank += _CHUNK_UNIT
                    path[2] = -1
                path[0] = rank
                add(path)
            paths = next_paths
        paths.sort(key=_rank)
        del paths[BEAM_SIZE:]
    best_rank, chosen = None, None
    for rank, _, last_end, path_chosen in paths:
        if last_end != -1:
            rank += _CHUNK_UNIT
        if best_rank is None or rank < best_rank:
            best_rank, chosen = rank, path_chosen
    matches = list(fixed)
    while chosen is not None:
        m, chosen = chosen
        matches[m[START]] = m
    return matches


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


def _alignment_stats(hyp: _Sentence, ref: _Sentence) -> tuple:
    """MeteorStats fields of the jar's best alignment of a hypothesis to a reference."""
    n_modules = 1 if hyp.keys == ref.keys else 4  # jar: identical sentences use exact matching only
    by_start = _candidates(hyp, ref, n_modules)
    fixed = _definite_matches(by_start)
    n_candidates = sum(map(len, by_start))
    # the rank's fields stay apart: each candidate adds its distance (at most the longer length) to a path at
    # most once, and a path closes at most two chunks per match
    assert (n_candidates + 1) * max(len(hyp.keys), len(ref.keys)) < _CHUNK_UNIT
    assert 2 * len(ref.keys) + 2 < _SCORE_UNIT // _CHUNK_UNIT
    all_fixed = n_candidates == len(fixed) - fixed.count(None)
    matches = fixed if all_fixed else _beam_search(by_start, fixed)
    words = [0, 0, 0, 0]  # per stage, as a match's WORDS
    chunks, ref_end, match_end = 0, -1, -1
    for m in matches:
        if m is not None:
            if m[START] != ref_end or m[MATCH_START] != match_end:  # a chunk starts: next to nothing before
                chunks += 1
            ref_end, match_end = m[REF_END], m[MATCH_END]
            words[m[MODULE]] |= m[WORDS]
    stages = []
    n2 = len(ref.keys)
    for stage_words in words:
        test_mask, ref_mask = stage_words >> n2, stage_words & ((1 << n2) - 1)
        test_function = (test_mask & hyp.function_mask).bit_count()
        ref_function = (ref_mask & ref.function_mask).bit_count()
        stages.append((test_mask.bit_count() - test_function, ref_mask.bit_count() - ref_function,
                       test_function, ref_function))
    return (len(hyp.keys), len(ref.keys), hyp.function_mask.bit_count(), ref.function_mask.bit_count(),
            tuple(stages), chunks)


def _java_div(a: float, b: float) -> float:
    """IEEE division as Java does it (inf / NaN instead of ZeroDivisionError)."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def stats_score(stats: MeteorStats) -> float:
    """MeteorScorer.computeMetrics: the score of one item's (or the summed) statistics."""
    return _score(stats.test_length, stats.reference_length, stats.test_function_words,
                  stats.reference_function_words, stats.stage_matches, stats.chunks)


def _score(test_length: int, reference_length: int, test_function_words: int, reference_function_words: int,
           stage_matches: tuple[tuple[int, int, int, int], ...], chunks: int) -> float:
    test_weighted_length = DELTA * (test_length - test_function_words) + (1.0 - DELTA) * test_function_words
    ref_weighted_length = (DELTA * (reference_length - reference_function_words)
                           + (1.0 - DELTA) * reference_function_words)
    test_weighted = ref_weighted = 0.0  # content words of every stage first, then function words, as the jar sums
    for weight, stage in zip(MODULE_WEIGHTS, stage_matches):
        test_weighted += stage[0] * weight * DELTA
        ref_weighted += stage[1] * weight * DELTA
    for weight, stage in zip(MODULE_WEIGHTS, stage_matches):
        test_weighted += stage[2] * weight * (1.0 - DELTA)
        ref_weighted += stage[3] * weight * (1.0 - DELTA)
    precision = _java_div(test_weighted, test_weighted_length)
    recall = _java_div(ref_weighted, ref_weighted_length)
    f_mean = _java_div(1.0, _java_div(1.0 - ALPHA, precision) + _java_div(ALPHA, recall))
    test_matches = sum(stage[0] + stage[2] for stage in stage_matches)
    reference_matches = sum(stage[1] + stage[3] for stage in stage_matches)
    if test_matches == test_length and reference_matches == reference_length and chunks == 1:
        frag = 0.0  # a perfect alignment
    else:
        frag = _java_div(float(chunks), (test_matches + reference_matches) / 2)
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
    phrases = _find_phrases(words, res)
    pairs = _paraphrase_pairs({pid for p in phrases for _, _, pid in p}, res)
    vocabulary = _Vocabulary(list(dict.fromkeys(w for ws in words for w in ws)), res)
    sentences = {t: _sentence(w, p, vocabulary, pairs) for t, w, p in zip(texts, words, phrases)}
    out = []
    for hyp, refs in items:
        best, best_score = None, -1.0
        for ref in refs:
            stats = _alignment_stats(sentences[hyp], sentences[ref])
            score = _score(*stats)
            if score > best_score:
                best, best_score = stats, score
        out.append(MeteorStats(*best))
    return out


def sentence_stats(hypothesis: str, references: list[str]) -> MeteorStats:
    from .meteor import score_line

    return score_lines([score_line(hypothesis, references)])[0]
