"""One optimisation step of each kind: cross-entropy (teacher forcing) and self-critical sequence training."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from misc.distributed import mean_over_ranks
from misc.losses import RewardCriterion
from misc.rewards import self_critical_reward
from misc.scorers import CiderD


def to_device(data: dict, device: torch.device) -> tuple:
    return tuple(None if data[k] is None else data[k].to(device)
                 for k in ("img_feats", "labels", "label_masks", "img_masks", "boxes"))


def xe_loss(model, crit, data: dict, device: torch.device) -> torch.Tensor:
    feats, labels, label_masks, masks, boxes = to_device(data, device)
    logprobs = model(feats, labels, masks, boxes)
    tokens = label_masks[:, 1:logprobs.size(1) + 1].sum()
    return crit(logprobs.float(), labels[:, 1:], label_masks[:, 1:], mean_over_ranks(tokens))


@dataclass
class ScstStats:
    reward: float
    sample_score: float
    greedy_score: float


def scst_loss(model, rl_crit: RewardCriterion, scorer: CiderD, data: dict, device: torch.device,
              opt: argparse.Namespace, seq_per_img: int) -> tuple[torch.Tensor, ScstStats]:
    """Multinomial samples (train mode, one per caption row) against the greedy caption (eval mode, no grad)."""
    feats, _, _, masks, boxes = to_device(data, device)
    cache = opt.decode_cache
    sampled, sample_logprobs = model.sample(feats, masks, boxes, opt={"sample_max": 0, "decode_cache": cache})
    model.eval()
    with torch.no_grad():
        # Rows of one image are identical and greedy decoding is deterministic in eval mode, so decoding one row
        # per image and repeating it gives the original's baseline (which decoded every row) at 1/seq_per_img cost.
        rows = torch.arange(0, feats.size(0), seq_per_img, device=device)
        pick = (lambda x: None if x is None else x[rows])
        greedy, _ = model.sample(pick(feats), pick(masks), pick(boxes), opt={"sample_max": 1, "decode_cache": cache})
        greedy = greedy.repeat_interleave(seq_per_img, 0)
    model.train()
    reward, sample_score, greedy_score = self_critical_reward(scorer, greedy, sampled, data["gts"],
                                                              opt.cider_reward_weight, opt.bleu_reward_weight)
    loss = rl_crit(sample_logprobs.float(), sampled, reward, mean_over_ranks(rl_crit.counted(sampled).sum()))
    return loss, ScstStats(float(reward[:, 0].mean()), sample_score, greedy_score)
