"""Our model against outputs the original code computed on the same weights and inputs (fixtures/original_outputs.pt)."""
from pathlib import Path

import pytest
import torch

from misc.losses import LabelSmoothing, LanguageModelCriterion, RewardCriterion
from misc.optim import clip_gradient, get_std_opt
from models import TransformerConfig, TransformerModel
from parity_weights import BEAM_SETTINGS, CONFIG, SAMPLE_SEED, TRAIN, label_masks, deterministic_state_dict, parity_inputs

EXPECTED = torch.load(Path(__file__).parent / "fixtures" / "original_outputs.pt")


def parity_model() -> TransformerModel:
    m = TransformerModel(TransformerConfig(**CONFIG))
    assert list(m.state_dict()) == EXPECTED["keys"]  # same checkpoint keys, in the same order
    m.load_state_dict(deterministic_state_dict(m.state_dict()), strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def model() -> TransformerModel:
    return parity_model()


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


def test_criteria(model):
    feats, masks, box_vec, labels = parity_inputs()
    lab_masks = label_masks(labels)
    with torch.no_grad():
        logprobs = model(feats, labels, masks, box_vec)
    xe = LanguageModelCriterion()(logprobs, labels[:, 1:], lab_masks[:, 1:])
    smoothed = LabelSmoothing(CONFIG["vocab_size"], TRAIN["label_smoothing"])(logprobs, labels[:, 1:], lab_masks[:, 1:])
    seq = EXPECTED["sample_seq"]
    reward = torch.linspace(-1, 1, seq.size(0))[:, None].expand_as(seq)
    rl = RewardCriterion()(EXPECTED["sample_logprobs"], seq, reward)
    for name, value in (("xe_loss", xe), ("smoothed_loss", smoothed), ("reward_loss", rl)):
        torch.testing.assert_close(value, EXPECTED[name], atol=1e-5, rtol=0, msg=name)


def test_xe_training_steps():
    """Three XE updates in train mode (dropout 0.5 drawing the same random masks), Noam Adam, gradient clamp:
    the same losses, learning rates and resulting model as the original's train.py loop."""
    model = parity_model().train()
    feats, masks, box_vec, labels = parity_inputs()
    lab_masks = label_masks(labels)
    optimizer = get_std_opt(model, factor=TRAIN["noam_factor"], warmup=TRAIN["noam_warmup"])
    crit = LanguageModelCriterion()
    torch.manual_seed(TRAIN["seed"])
    losses, rates = [], []
    for _ in range(TRAIN["steps"]):
        optimizer.zero_grad()
        loss = crit(model(feats, labels, masks, box_vec), labels[:, 1:], lab_masks[:, 1:])
        loss.backward()
        clip_gradient(model.parameters(), TRAIN["grad_clip"])
        optimizer.step()
        losses.append(loss.item())
        rates.append(optimizer._rate)
    model.eval()
    with torch.no_grad():
        trained = model(feats, labels, masks, box_vec)
    torch.testing.assert_close(torch.tensor(losses), EXPECTED["train_losses"], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(rates, dtype=torch.float64), EXPECTED["train_rates"])
    torch.testing.assert_close(trained, EXPECTED["trained_logprobs"], atol=1e-5, rtol=0)
