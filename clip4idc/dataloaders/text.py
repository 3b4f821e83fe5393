"""Text tensors of the original loaders: text-tower input and shifted caption input/output, zero-padded."""
from __future__ import annotations

import numpy as np

from modules.tokenization_clip import EOT, SOT, ClipTokenizer


def pad(ids: list[int], length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.int64)
    out[: len(ids)] = ids
    return out


def text_input(tokenizer: ClipTokenizer, caption: str | None, max_words: int) -> tuple[np.ndarray, ...]:
    """(ids, mask, segment) each [1, max_words]: [SOT] + tokens[:max_words-2] + [EOT]; no caption -> [SOT, EOT]."""
    words = tokenizer.tokenize(caption)[: max_words - 2] if caption is not None else []
    ids = tokenizer.convert_tokens_to_ids([SOT] + words + [EOT])
    return pad(ids, max_words)[None], pad([1] * len(ids), max_words)[None], np.zeros((1, max_words), dtype=np.int64)


def caption_target(tokenizer: ClipTokenizer, caption: str, max_words: int) -> tuple[np.ndarray, ...]:
    """(input, mask, output) each [1, max_words]: input [SOT]+w[:max_words-1], output w[:max_words-1]+[EOT]."""
    words = tokenizer.tokenize(caption)[: max_words - 1]
    inp = tokenizer.convert_tokens_to_ids([SOT] + words)
    out = tokenizer.convert_tokens_to_ids(words + [EOT])
    return pad(inp, max_words)[None], pad([1] * len(inp), max_words)[None], pad(out, max_words)[None]
