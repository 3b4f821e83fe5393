"""Tokeniser and vocabulary: the spec's examples, and corpus files loadable with torch's safe loader."""
from __future__ import annotations

import os
import pickle
import sys
import zipfile

import pytest
import torch

import dmn_pytorch.utils as utils_package
from dmn_pytorch.utils import word_utils
from dmn_pytorch.utils.word_utils import Corpus, EmptyQueryError, load_corpus


@pytest.fixture()
def corpus(tmp_path) -> Corpus:
    vocab = tmp_path / "vocabulary.txt"
    # Same start as the TF-phrasecut files; a case duplicate and a blank line collapse.
    vocab.write_text("<pad>\n<go>\n<eos>\n<unk>\nthe\nyellow\nYellow\n\ntriangle\nleft of\n")
    c = Corpus()
    c.load_file(vocab)
    return c


def words(c: Corpus, ids: torch.Tensor) -> list[str]:
    return c.dictionary[ids.tolist()]


def test_vocabulary_rules(corpus):
    assert corpus.dictionary.idx2word == ["<pad>", "<go>", "<eos>", "<unk>", "the", "yellow", "triangle", "left", "of"]
    assert corpus.dictionary["<pad>"] == 0 and corpus.dictionary["<unk>"] == 3


def test_vocabulary_without_specials_gets_unk_then_pad(tmp_path):
    vocab = tmp_path / "v.txt"
    vocab.write_text("a b\nc\n")
    c = Corpus()
    c.load_file(vocab)
    assert c.dictionary.idx2word == ["a", "b", "c", "<unk>", "<pad>"]


def test_separators_are_unknown_tokens(corpus):
    ids = corpus.tokenize("the yellow triangle", -1)
    assert words(corpus, ids) == ["the", "<unk>", "yellow", "<unk>", "triangle"]
    assert ids.dtype == torch.long and len(ids) == 2 * 3 - 1


def test_case_punctuation_and_final_dot(corpus):
    assert words(corpus, corpus.tokenize("The Yellow, triangle.", -1)) == [
        "the", "<unk>", "yellow", "<unk>", "triangle"]
    # Only a final token that is exactly "." goes; "!" stays (as <unk>).
    assert words(corpus, corpus.tokenize("triangle!", -1)) == ["triangle", "<unk>"]


def test_max_len_left_pads_and_truncates(corpus):
    assert words(corpus, corpus.tokenize("yellow triangle", 5)) == ["<pad>", "<pad>", "yellow", "<unk>", "triangle"]
    assert words(corpus, corpus.tokenize("the yellow triangle", 2)) == ["the", "<unk>"]


@pytest.mark.parametrize("query", ["", "   ", "."])
def test_empty_query_is_a_clear_error(corpus, query):
    with pytest.raises(EmptyQueryError, match="query"):
        corpus.tokenize(query, -1)


def test_corpus_file_loads_with_weights_only(tmp_path, corpus):
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") is None
    path = tmp_path / "corpus.pth"
    torch.save(corpus, path)
    loaded = load_corpus(path)
    assert loaded.dictionary.idx2word == corpus.dictionary.idx2word
    # Safe loading stays on for everything else.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_corpus_pickled_under_old_module_name_loads(tmp_path, corpus, monkeypatch):
    """Older corpus.pth files name the class utils.word_utils.Corpus (the original aliased `utils`)."""
    monkeypatch.setitem(sys.modules, "utils", utils_package)
    monkeypatch.setitem(sys.modules, "utils.word_utils", word_utils)
    monkeypatch.setattr(Corpus, "__module__", "utils.word_utils")
    monkeypatch.setattr(word_utils.Dictionary, "__module__", "utils.word_utils")
    path = tmp_path / "corpus.pth"
    torch.save(corpus, path)
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"utils.word_utils" in pickled and b"dmn_pytorch" not in pickled
    monkeypatch.undo()
    assert load_corpus(path).dictionary.idx2word == corpus.dictionary.idx2word
