"""Training criteria: masked cross-entropy, label smoothing, and the self-critical policy-gradient loss."""
from __future__ import annotations

import torch
from torch import nn


class LanguageModelCriterion(nn.Module):
    """sum(-log p(target) * mask) / sum(mask); the mask covers the words and the first EOS."""

    def forward(self, logprobs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                normalizer: torch.Tensor | None = None) -> torch.Tensor:
        """``normalizer`` replaces sum(mask) (data-parallel training passes the mean count over the processes)."""
        target, mask = target[:, :logprobs.size(1)], mask[:, :logprobs.size(1)].to(logprobs.dtype)
        nll = -logprobs.gather(2, target.unsqueeze(2)).squeeze(2)
        return (nll * mask).sum() / (mask.sum() if normalizer is None else normalizer)


class LabelSmoothing(nn.Module):
    """KL divergence to a target with 1 - s on the true word and s / (vocab_size - 1) elsewhere.

    The original divides by (vocab_size - 1) with vocab_size counting words only, while the distribution has
    vocab_size + 1 entries; kept as is.
    """

    def __init__(self, vocab_size: int, smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError("--label_smoothing must be in [0, 1)")
        self.criterion = nn.KLDivLoss(reduction="none")
        self.confidence = 1.0 - smoothing
        self.smoothing = smoothing / (vocab_size - 1)

    def forward(self, logprobs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                normalizer: torch.Tensor | None = None) -> torch.Tensor:
        target, mask = target[:, :logprobs.size(1)], mask[:, :logprobs.size(1)]
        flat = logprobs.reshape(-1, logprobs.size(-1))
        true_dist = torch.full_like(flat, self.smoothing).scatter_(1, target.reshape(-1, 1), self.confidence)
        mask = mask.reshape(-1).to(flat.dtype)
        return (self.criterion(flat, true_dist).sum(1) * mask).sum() / (mask.sum() if normalizer is None else normalizer)


class RewardCriterion(nn.Module):
    """-sum(logp(sampled word) * reward * mask) / sum(mask), the mask including the first EOS."""

    @staticmethod
    def counted(seq: torch.Tensor) -> torch.Tensor:
        """1 on the words and the first EOS of each sampled row, 0 after it."""
        mask = (seq > 0).float()
        return torch.cat([mask.new_ones(mask.size(0), 1), mask[:, :-1]], 1)

    def forward(self, logprobs: torch.Tensor, seq: torch.Tensor, reward: torch.Tensor,
                normalizer: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.counted(seq).to(logprobs.dtype)
        return -(logprobs * reward * mask).sum() / (mask.sum() if normalizer is None else normalizer)
