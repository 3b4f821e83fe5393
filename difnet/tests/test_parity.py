"""Our model against values computed by the original DIFNet code on the same weights and inputs."""
from pathlib import Path

import numpy as np
import pytest
import torch

from models import CaptioningModel, ModelConfig, beam_search, recording
from parity_weights import V, deterministic_state_dict, parity_inputs

pytestmark = pytest.mark.parity

EXPECTED = torch.load(Path(__file__).parent / "fixtures" / "original_outputs.pt")


def parity_model(mode: str) -> CaptioningModel:
    model = CaptioningModel(ModelConfig(mode=mode, vocab_size=V))
    model.load_state_dict(deterministic_state_dict(model.state_dict()), strict=True)
    return model.eval()


@pytest.mark.parametrize("mode", ["base", "base_lrp", "difnet", "difnet_lrp"])
def test_forward_and_beam_search_match_original(mode):
    model = parity_model(mode)
    grid, seg, seq = parity_inputs()
    expected = EXPECTED[mode]
    with torch.no_grad():
        logprobs = model(grid, seq, seg)
        tokens, token_logprobs = beam_search(model, grid, seg, 20, 3, 5, out_size=5)
    torch.testing.assert_close(logprobs, expected["logprobs"], atol=1e-5, rtol=0)
    assert torch.equal(tokens, expected["beam_tokens"])
    torch.testing.assert_close(token_logprobs, expected["beam_logprobs"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["base_lrp", "difnet_lrp"])
def test_lrp_matches_original(mode):
    """Relevance of the 49 encoder cells and of the previous words for every target position (lrp_total.py)."""
    model = parity_model(mode)
    grid, seg, seq = parity_inputs()
    grid, seg, seq = grid[:1], seg[:1], seq[:1, :7]
    with recording(model):
        out = model(grid, seq, seg)
    top1 = torch.zeros_like(out).scatter_(2, out.argmax(-1, keepdim=True), 1)
    inp, dec = [], []
    for t in range(seq.shape[1]):
        R = torch.zeros_like(top1)
        R[:, t] = top1[:, t]
        rel = model.relprop_encode_decode(R, alpha=1)
        inp.append(rel["emb_inp"].sum(-1)[0].numpy())
        dec.append(rel["emb_out"].abs().sum(-1)[0].numpy())
    expected = EXPECTED[mode]
    np.testing.assert_allclose(np.array(inp), expected["inp_lrp"].numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(np.array(dec), expected["out_lrp"].numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["base", "difnet_lrp"])
def test_fused_attention_keeps_parity(mode):
    """--fused_attention (torch's scaled_dot_product_attention) computes the same function."""
    model = CaptioningModel(ModelConfig(mode=mode, vocab_size=V, fused_attention=True))
    model.load_state_dict(deterministic_state_dict(model.state_dict()), strict=True)
    model.eval()
    grid, seg, seq = parity_inputs()
    with torch.no_grad():
        logprobs = model(grid, seq, seg)
        tokens, _ = beam_search(model, grid, seg, 20, 3, 5, out_size=5)
    torch.testing.assert_close(logprobs, EXPECTED[mode]["logprobs"], atol=1e-5, rtol=0)
    assert torch.equal(tokens, EXPECTED[mode]["beam_tokens"])
