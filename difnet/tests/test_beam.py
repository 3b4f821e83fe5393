"""Beam search: cached step-by-step decoding agrees with teacher forcing; SCST can back-propagate through it."""
import torch

from models import CaptioningModel, ModelConfig, beam_search
from parity_weights import V, deterministic_state_dict, parity_inputs

EOS = 3


def model(mode: str = "difnet_lrp") -> CaptioningModel:
    m = CaptioningModel(ModelConfig(mode=mode, vocab_size=V, d_model=64, d_ff=128, h=4))
    m.load_state_dict(deterministic_state_dict(m.state_dict()))
    return m


def test_cached_decoding_matches_teacher_forcing():
    m = model().eval()
    grid, seg, _ = parity_inputs()
    with torch.no_grad():
        tokens, logprobs = beam_search(m, grid, seg, 12, EOS, 3, out_size=3)
        for b in range(2):
            for k in range(3):
                seq = tokens[b, k].tolist()
                n = seq.index(EOS) + 1 if EOS in seq else len(seq)
                inp = torch.tensor([[2] + seq[: n - 1]])
                tf = m(grid[b: b + 1], inp, seg[b: b + 1])[0]
                expected = tf.gather(1, torch.tensor(seq[:n]).unsqueeze(1)).squeeze(1)
                torch.testing.assert_close(logprobs[b, k, :n], expected, atol=1e-5, rtol=0)
                assert torch.all(logprobs[b, k, n:] == 0)  # frozen after <eos>
    # beams are sorted by summed log-probability, and the states are back to their defaults
    sums = logprobs.sum(-1)
    assert torch.all(sums[:, :-1] >= sums[:, 1:])
    assert m.decoder.running_seq.shape == (1,) and m.decoder.layers[0].self_att.running_keys.shape == (0, 64)


def test_beam_search_is_differentiable_in_train_mode():
    m = model().train()
    grid, seg, _ = parity_inputs()
    _, logprobs = beam_search(m, grid, seg, 6, EOS, 5, out_size=5)
    logprobs.mean().backward()
    assert m.embed_pixel[1].weight.grad.abs().sum() > 0 and m.decoder.fc.weight.grad.abs().sum() > 0


def test_base_mode_ignores_segmentation():
    m = model("base").eval()
    grid, seg, seq = parity_inputs()
    with torch.no_grad():
        assert torch.equal(m(grid, seq, seg), m(grid, seq, None))
