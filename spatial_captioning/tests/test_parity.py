"""Our model against outputs the original code computed on the same weights and inputs (fixtures/original_outputs.pt)."""
from pathlib import Path

import pytest
import torch

from models import TransformerConfig, TransformerModel
from parity_weights import BEAM_SETTINGS, CONFIG, SAMPLE_SEED, deterministic_state_dict, parity_inputs

EXPECTED = torch.load(Path(__file__).parent / "fixtures" / "original_outputs.pt")


@pytest.fixture(scope="module")
def model() -> TransformerModel:
    m = TransformerModel(TransformerConfig(**CONFIG))
    assert list(m.state_dict()) == EXPECTED["keys"]  # same checkpoint keys, in the same order
    m.load_state_dict(deterministic_state_dict(m.state_dict()), strict=True)
    return m.eval()


def test_teacher_forced_logprobs(model):
    feats, masks, box_vec, labels = parity_inputs()
    with torch.no_grad():
        out = model(feats, labels, masks, box_vec)
    torch.testing.assert_close(out, EXPECTED["logprobs"], atol=1e-5, rtol=0)


def test_greedy_decoding(model):
    feats, masks, box_vec, _ = parity_inputs()
    with torch.no_grad():
        seq, logprobs = model.sample(feats, masks, box_vec, {"sample_max": 1})
        constrained, _ = model.sample(feats, masks, box_vec, {"sample_max": 1, "decoding_constraint": 1})
    assert torch.equal(seq, EXPECTED["greedy_seq"])
    torch.testing.assert_close(logprobs, EXPECTED["greedy_logprobs"], atol=1e-5, rtol=0)
    assert torch.equal(constrained, EXPECTED["greedy_constrained_seq"])


def test_multinomial_sampling_with_the_same_seed(model):
    """SCST's samples: the same torch RNG draws give the same words (temperature 0.8, not renormalised)."""
    feats, masks, box_vec, _ = parity_inputs()
    torch.manual_seed(SAMPLE_SEED)
    with torch.no_grad():
        seq, logprobs = model.sample(feats, masks, box_vec, {"sample_max": 0, "temperature": 0.8})
    assert torch.equal(seq, EXPECTED["sample_seq"])
    torch.testing.assert_close(logprobs, EXPECTED["sample_logprobs"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(BEAM_SETTINGS))
def test_beam_search(model, name):
    feats, masks, box_vec, _ = parity_inputs()
    with torch.no_grad():
        seq, logprobs = model.sample(feats, masks, box_vec, BEAM_SETTINGS[name])
    assert torch.equal(seq, EXPECTED[f"{name}_seq"])
    torch.testing.assert_close(logprobs, EXPECTED[f"{name}_logprobs"], atol=1e-5, rtol=0)
