"""An image's caption does not depend on the batch it is decoded in, nor on what the process decoded before.

Batch-1 decoding once shifted the decoder's positions for every later call (the running position was a view of
the stored default and was incremented in place), so this decodes the same images one at a time, twice, and in
batches ending with a batch of one, and compares with one batch of all of them. The beam search runs with its
default key/value cache (the cross-attention keys are projected at the batch's size, once per decode).
"""
import pytest
import torch

from models import CaptioningModel, ModelConfig, beam_search
from parity_weights import V, deterministic_state_dict

pytestmark = pytest.mark.parity

EOS = 3
MAX_LEN = 20
N_IMAGES = 6
# float64, so that only a real dependence on the batch can show: the largest gap measured between batch 1 and
# batch 6 on this machine was 3.1e-15
ATOL = 1e-12


def small_model(mode: str) -> CaptioningModel:
    model = CaptioningModel(ModelConfig(mode=mode, vocab_size=V, d_model=32, d_ff=64, h=4))
    model.load_state_dict(deterministic_state_dict(model.state_dict()), strict=True)
    return model.eval().double()


def images() -> tuple[torch.Tensor, torch.Tensor]:
    """Grid features and peaked segmentation class maps (varied enough that the images get different captions)."""
    g = torch.Generator().manual_seed(7)
    grid = torch.relu(torch.randn(N_IMAGES, 49, 2048, generator=g))
    seg = torch.softmax(4 * torch.randn(N_IMAGES, 133, 7, 7, generator=g), dim=1)
    return grid.double(), seg.double()


def decode_in_batches(model: CaptioningModel, grid: torch.Tensor, seg: torch.Tensor, sizes: list[int],
                      beam_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, logprobs = [], []
    start = 0
    for size in sizes:
        t, lp = beam_search(model, grid[start: start + size], seg[start: start + size], MAX_LEN, EOS, beam_size,
                            out_size=beam_size)
        tokens.append(t.view(size, beam_size, MAX_LEN))  # greedy (beam 1) drops the beam dimension
        logprobs.append(lp.view(size, beam_size, MAX_LEN))
        start += size
    return torch.cat(tokens), torch.cat(logprobs)


@pytest.mark.parametrize("beam_size", [3, 1], ids=["beam", "greedy"])
@pytest.mark.parametrize("mode", ["base", "base_lrp", "difnet", "difnet_lrp"])
def test_captions_do_not_depend_on_the_batch(mode, beam_size):
    model = small_model(mode)
    buffers_before = {k: v.clone() for k, v in model.state_dict().items() if k in dict(model.named_buffers())}
    grid, seg = images()
    with torch.no_grad():
        tokens, logprobs = decode_in_batches(model, grid, seg, [N_IMAGES], beam_size)
        assert len({tuple(t) for t in tokens[:, 0].tolist()}) >= 2, "captions too alike to show a batch effect"
        for sizes in ([1] * N_IMAGES, [1] * N_IMAGES, [N_IMAGES - 1, 1], [2, 3, 1]):
            t, lp = decode_in_batches(model, grid, seg, sizes, beam_size)
            assert torch.equal(t, tokens), sizes
            torch.testing.assert_close(lp, logprobs, atol=ATOL, rtol=0)
    for key, value in buffers_before.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_checkpoint_with_a_shifted_running_position_decodes_the_same():
    """Checkpoints written while batch-1 decoding shifted the running position hold decoder.running_seq > 0;
    loading one, before or after a decode, must not shift the positions of later decodes."""
    model = small_model("difnet_lrp")
    grid, seg = images()
    with torch.no_grad():
        expected, _ = beam_search(model, grid, seg, MAX_LEN, EOS, 3)
        shifted = model.state_dict()
        shifted["decoder.running_seq"] = torch.tensor([35])
        model.load_state_dict(shifted)
        assert torch.equal(beam_search(model, grid, seg, MAX_LEN, EOS, 3)[0], expected)
        model.load_state_dict(shifted)
        assert torch.equal(beam_search(model, grid, seg, MAX_LEN, EOS, 3)[0], expected)
