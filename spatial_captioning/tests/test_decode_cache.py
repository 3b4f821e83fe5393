"""The cached decoder (one position per step, keys/values kept) against the original's full-prefix re-decoding.

Same words for greedy, sampling and (diverse) beam search; log-probabilities equal up to float32 rounding, on the
parity weights, on a model trained on the toy set, and through SCST's train-mode sampling and its gradient.
"""
import pytest
import torch

import models
import opts
from dataloader import DataLoader
from engine import scst_loss
from misc.losses import RewardCriterion
from misc.scorers import CiderD
from models import TransformerConfig, TransformerModel
from parity_weights import BEAM_SETTINGS, CONFIG, SAMPLE_SEED, deterministic_state_dict, parity_inputs
from toy_runs import TINY, data_args

pytestmark = pytest.mark.parity

DECODINGS = {"greedy": {"sample_max": 1}, "greedy_constrained": {"sample_max": 1, "decoding_constraint": 1},
             "sample": {"sample_max": 0, "temperature": 0.8}, **BEAM_SETTINGS}
# Largest log-prob gap between the two decoders in float32: measured 1.9e-6 on the parity weights (values down to
# about -19) and 9.5e-7 on the toy model (values down to -4.6); float32 rounding of differently blocked matrix
# products (0 to 2.7e-15 in float64). The bound, 1e-5, is five times the larger.
LOGPROB_TOLERANCE = 1e-5


def decode_both(model: TransformerModel, feats, masks, boxes, opt: dict) -> tuple[tuple, tuple]:
    """(seq, logprobs) of the full-prefix decoder and of the cached one, each after the same torch seed."""
    out = []
    for cache in (0, 1):
        torch.manual_seed(SAMPLE_SEED)
        with torch.no_grad():
            out.append(model.sample(feats, masks, boxes, {**opt, "decode_cache": cache}))
    return out[0], out[1]


def parity_model() -> TransformerModel:
    model = TransformerModel(TransformerConfig(**CONFIG))
    model.load_state_dict(deterministic_state_dict(model.state_dict()), strict=True)
    return model.eval()


@pytest.mark.parametrize("name", sorted(DECODINGS))
def test_same_words_on_the_parity_weights(name):
    model = parity_model()
    feats, masks, boxes, _ = parity_inputs(torch.float32)
    (old_seq, old_lp), (new_seq, new_lp) = decode_both(model, feats, masks, boxes, DECODINGS[name])
    assert torch.equal(old_seq, new_seq)
    assert (old_seq > 0).any()
    torch.testing.assert_close(new_lp, old_lp, atol=LOGPROB_TOLERANCE, rtol=0)


def test_cached_decoder_feeds_one_position_per_step(monkeypatch):
    """The cached decoder never re-runs the prefix: every step sends one position through the decoder layers, and
    the cache then holds every earlier position."""
    model = parity_model()
    widths = []
    original_step = model.model.decoder.step
    monkeypatch.setattr(model.model.decoder, "forward", lambda *a: pytest.fail("full-prefix decoder called"))
    monkeypatch.setattr(model.model.decoder, "step", lambda x, *a: widths.append(x.size(1)) or original_step(x, *a))
    feats, masks, boxes, _ = parity_inputs(torch.float32)
    with torch.no_grad():
        seq, _ = model.sample(feats, masks, boxes, {"sample_max": 1})
        memory, memory_mask = model.encode(feats, masks, boxes)
        step = model.decoder_step(memory, memory_mask, cached=True)
        words, state = torch.zeros(3, dtype=torch.long), None
        for _ in range(5):
            logprobs, state = step(words, state)
            words = logprobs.argmax(1)
    assert seq.size(1) == CONFIG["seq_length"] and (seq[:, -1] > 0).any()  # greedy ran all 16 steps
    assert widths == [1] * (CONFIG["seq_length"] + 5)
    assert len(state) == 2 * CONFIG["num_layers"]
    assert all(t.shape == (1, 3, CONFIG["heads"], 5, CONFIG["input_encoding_size"] // CONFIG["heads"]) for t in state)


@pytest.fixture(scope="module")
def toy_model_and_batch(xe_run, toy_dir):
    """The shared toy XE model (1 layer, d=64) and 12 validation images (one row each)."""
    opt = opts.parse_opt(["--id", "xe", *data_args(toy_dir), *TINY, "--batch_size", "12", "--seq_per_img", "1"])
    loader = DataLoader(opt, "val", length=12)
    opt.vocab_size, opt.seq_length = loader.vocab_size(), loader.seq_length()
    model = models.setup(opt)
    model.load_state_dict(torch.load(xe_run / "model.pth"))
    return model.eval(), next(iter(loader))


@pytest.mark.parametrize("name", ["greedy", "sample", "beam3", "diverse4x2"])
def test_same_words_on_the_toy_model(toy_model_and_batch, name):
    model, data = toy_model_and_batch
    (old_seq, old_lp), (new_seq, new_lp) = decode_both(model, data["img_feats"], data["img_masks"], data["boxes"],
                                                       DECODINGS[name])
    assert torch.equal(old_seq, new_seq)
    assert (old_seq > 0).sum(1).min() >= 3  # real captions, not empty ones
    torch.testing.assert_close(new_lp, old_lp, atol=LOGPROB_TOLERANCE, rtol=0)


def test_scst_sampling_and_gradient_in_train_mode():
    """SCST samples in train mode with gradients. Without dropout both decoders draw the same words from the same
    seed and give the same policy-gradient loss and gradients (float64: equal to 1e-12)."""
    model = TransformerModel(TransformerConfig(**{**CONFIG, "dropout": 0.0})).double()
    model.load_state_dict(deterministic_state_dict(model.state_dict()), strict=True)
    model.train()
    feats, masks, boxes, _ = parity_inputs(torch.float64)
    results = []
    for cache in (0, 1):
        torch.manual_seed(SAMPLE_SEED)
        model.zero_grad()
        seq, logprobs = model.sample(feats, masks, boxes, {"sample_max": 0, "decode_cache": cache})
        reward = torch.linspace(-1, 1, seq.size(0), dtype=torch.float64)[:, None]
        (-(logprobs * reward).sum()).backward()
        results.append((seq, logprobs.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (old_seq, old_lp, old_grads), (new_seq, new_lp, new_grads) = results
    assert torch.equal(old_seq, new_seq)
    torch.testing.assert_close(new_lp, old_lp, rtol=1e-12, atol=1e-12)
    assert len(old_grads) == len(new_grads) > 0
    for old, new in zip(old_grads, new_grads):
        torch.testing.assert_close(new, old, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("flag", [0, 1])
def test_scst_step_decodes_with_the_flag_chosen(flag, monkeypatch):
    """train.py's --decode_cache reaches SCST's sampling and greedy baseline (0: the original's full prefix)."""
    model = parity_model().train()
    used = []
    for name in ("get_logprobs_state", "get_logprobs_state_cached"):
        method = getattr(model, name)
        monkeypatch.setattr(model, name, lambda *a, _m=method, _n=name: used.append(_n) or _m(*a))
    feats, masks, boxes, labels = parity_inputs(torch.float32)
    data = {"img_feats": feats, "img_masks": masks, "boxes": boxes, "labels": labels, "label_masks": None,
            "gts": [labels[i:i + 1, 1:-1].numpy() for i in range(3)]}
    opt = opts.parse_opt(["--id", "x", "--decode_cache", str(flag)])
    scorer = CiderD({(str(w),): 1.0 for w in range(CONFIG["vocab_size"] + 1)}, 10)
    loss, _ = scst_loss(model, RewardCriterion(), scorer, data, torch.device("cpu"), opt, seq_per_img=1)
    loss.backward()
    assert set(used) == {"get_logprobs_state_cached" if flag else "get_logprobs_state"}
