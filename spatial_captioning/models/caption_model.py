"""Beam search (with diverse groups) shared by caption models, as in self-critical.pytorch's CaptionModel."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# The original subtracts 1000 from the last vocabulary index (UNK) at every beam step, so beams never emit UNK.
UNK_PENALTY = 1000.0
# A finished beam's running score is set to this so it is not expanded again.
DONE_SCORE = -1000.0


@dataclass
class BeamOptions:
    beam_size: int = 10
    group_size: int = 1
    diversity_lambda: float = 0.5
    decoding_constraint: int = 0
    max_ppl: int = 0

    @classmethod
    def from_dict(cls, opt: dict) -> "BeamOptions":
        return cls(**{k: opt[k] for k in cls.__dataclass_fields__ if k in opt})


# step(group, it, state) -> (logprobs, state): advances every beam of one diversity group by one word.
StepFn = Callable[[int, torch.Tensor, list[torch.Tensor]], tuple[torch.Tensor, list[torch.Tensor]]]


def _beam_step(logprobs: torch.Tensor, unaug: torch.Tensor, beam_size: int, t: int, beam_seq: torch.Tensor,
               beam_seq_logprobs: torch.Tensor, beam_sum: torch.Tensor, state: list[torch.Tensor]):
    """One step of classical beam search; candidates ranked as the original's stable sort over (word, beam)."""
    ys, ix = torch.sort(logprobs, 1, True)
    cols = min(beam_size, ys.size(1))
    rows = 1 if t == 0 else beam_size
    # Candidate list in the original's order: word rank c outer, beam q inner; then a stable sort by -score.
    cand_q = torch.arange(rows).repeat(cols)
    cand_c = torch.arange(cols).repeat_interleave(rows)
    scores = beam_sum[cand_q] + ys[cand_q, cand_c]
    order = torch.sort(-scores, stable=True).indices[:beam_size]
    q, c = cand_q[order], cand_c[order]
    words = ix[q, c]
    new_seq, new_seq_logprobs = beam_seq.clone(), beam_seq_logprobs.clone()
    if t >= 1:
        new_seq[:t] = beam_seq[:t, q]
        new_seq_logprobs[:t] = beam_seq_logprobs[:t, q]
    new_seq[t] = words
    new_seq_logprobs[t] = unaug[q, words]
    new_state = [s[:, q].clone() for s in state]
    return new_seq, new_seq_logprobs, scores[order].clone(), new_state


def beam_search(step: StepFn, init_state: list[torch.Tensor], init_logprobs: torch.Tensor, seq_length: int,
                opt: BeamOptions) -> list[dict]:
    """Diverse beam search for one image; returns the finished beams, best first within each group."""
    group_size = opt.group_size
    bdash = opt.beam_size // group_size
    seq_table = [torch.zeros(seq_length, bdash, dtype=torch.long) for _ in range(group_size)]
    seq_logprobs_table = [torch.zeros(seq_length, bdash) for _ in range(group_size)]
    sum_table = [torch.zeros(bdash) for _ in range(group_size)]
    done_table: list[list[dict]] = [[] for _ in range(group_size)]
    state_table = [[s.chunk(group_size, 1)[g] for s in init_state] for g in range(group_size)]
    logprobs_table = list(init_logprobs.chunk(group_size, 0))

    for t in range(seq_length + group_size - 1):
        for divm in range(group_size):
            if not (divm <= t <= seq_length + divm - 1):
                continue
            local_t = t - divm
            logprobs = logprobs_table[divm].detach().float().cpu().clone()
            if opt.decoding_constraint and local_t > 0:
                logprobs.scatter_(1, seq_table[divm][local_t - 1].unsqueeze(1), float("-inf"))
            logprobs[:, -1] = logprobs[:, -1] - UNK_PENALTY
            unaug = logprobs.clone()
            for prev in range(divm):  # diversity: penalise words the earlier groups chose at this time step
                for word in seq_table[prev][local_t].tolist():
                    logprobs[:, word] -= opt.diversity_lambda
            (seq_table[divm], seq_logprobs_table[divm], sum_table[divm],
             state_table[divm]) = _beam_step(logprobs, unaug, bdash, local_t, seq_table[divm],
                                             seq_logprobs_table[divm], sum_table[divm], state_table[divm])
            for vix in range(bdash):
                if seq_table[divm][local_t, vix] == 0 or t == seq_length + divm - 1:
                    beam = {"seq": seq_table[divm][:, vix].clone(), "logps": seq_logprobs_table[divm][:, vix].clone(),
                            "unaug_p": seq_logprobs_table[divm][:, vix].sum().item(),
                            "p": sum_table[divm][vix].item()}
                    if opt.max_ppl:
                        beam["p"] = beam["p"] / (local_t + 1)
                    done_table[divm].append(beam)
                    sum_table[divm][vix] = DONE_SCORE
            it = seq_table[divm][local_t].to(init_logprobs.device)
            logprobs_table[divm], state_table[divm] = step(divm, it, state_table[divm])
    done = [sorted(beams, key=lambda b: -b["p"])[:bdash] for beams in done_table]
    return [beam for group in done for beam in group]
