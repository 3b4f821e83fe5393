"""The original's learning-rate schedule and SCST reward."""
import numpy as np
import pytest
import torch

from engine import scst_rewards
from shared_eval.captions import CiderD, tokenize
from train import xe_lr_lambda


def test_xe_schedule_steps_once_per_epoch():
    model = torch.nn.Linear(2, 2)
    optim = torch.optim.Adam(model.parameters(), lr=1, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optim, xe_lr_lambda(1e-4))
    lrs = []
    for _ in range(14):  # train.py steps the scheduler at the start of each XE epoch
        optim.step()
        scheduler.step()
        lrs.append(optim.param_groups[0]["lr"])
    expected = [2.5e-5, 5e-5, 7.5e-5] + [1e-4] * 7 + [2e-5] * 2 + [4e-6] * 2
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_scst_rewards_are_cider_d_of_each_beam_against_its_image():
    refs = [["A red circle left of a blue square on grass.", "a red circle and a blue square"],
            ["a white diamond above a green triangle on snow"]]
    scorer = CiderD.from_references([[c] for c in tokenize([r for rs in refs for r in rs])])
    candidates = ["a red circle left of a blue square on grass", "a red circle", "a white diamond on snow",
                  "a red circle on grass"]
    rewards = scst_rewards(scorer, candidates, refs, beam_size=2)
    expected = scorer.score(tokenize(candidates), [tokenize(refs[0])] * 2 + [tokenize(refs[1])] * 2)
    np.testing.assert_array_equal(rewards, expected)
    assert rewards[0] > rewards[1] and rewards[2] > rewards[3]
