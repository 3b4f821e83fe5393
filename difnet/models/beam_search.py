"""Beam search of M² (with the integer beam index fix), as DIFNet uses it for evaluation and SCST."""
from __future__ import annotations

import torch

from .captioner import CaptioningModel


def _select_beams(selected_beam: torch.Tensor, cur_beam_size: int, beam_size: int):
    """A function that reorders a (b * cur_beam_size, ...) state to the selected beams, (b * beam_size, ...)."""
    b_s = selected_beam.shape[0]

    def fn(s: torch.Tensor) -> torch.Tensor:
        shape = list(s.shape[1:])
        index = selected_beam.view(b_s, beam_size, *([1] * len(shape))).expand(b_s, beam_size, *shape)
        return torch.gather(s.view(b_s, cur_beam_size, *shape), 1, index).view(b_s * beam_size, *shape)

    return fn


def beam_search(model: CaptioningModel, images: torch.Tensor, pixels: torch.Tensor | None, max_len: int,
                eos_idx: int, beam_size: int, out_size: int = 1, *,
                cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (b, out_size, max_len) and their per-word log-probabilities (0 after <eos>), best beam first.

    The encoder runs once; finished beams are frozen (their score no longer changes) and beams are ranked by
    summed log-probability. Gradients flow through the log-probabilities (SCST runs it in train mode).
    With ``out_size == 1`` the beam dimension is dropped. ``cache=True`` keeps projected keys and values, so each
    step computes one position; ``cache=False`` is the original's path (the whole prefix re-projected per step).
    """
    b_s = images.shape[0]
    device = images.device
    seq_mask = torch.ones((b_s, beam_size, 1), device=device)
    seq_logprob = torch.zeros((b_s, 1, 1), device=device)
    log_probs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    with model.statefulness(b_s, cache):
        enc_output, mask_enc = model.encode(images, pixels)
        words = torch.full((b_s, 1), model.bos_idx, dtype=torch.long, device=device)
        for t in range(max_len):
            cur_beam_size = 1 if t == 0 else beam_size
            word_logprob = model.decoder(words, enc_output, mask_enc).view(b_s, cur_beam_size, -1)
            vocab_size = word_logprob.shape[-1]
            candidate_logprob = seq_logprob + word_logprob
            if t > 0:
                # a beam that emitted <eos> keeps its score through its first candidate only
                alive = (words.view(b_s, cur_beam_size) != eos_idx).float().unsqueeze(-1)
                seq_mask = seq_mask * alive
                word_logprob = word_logprob * seq_mask.expand_as(word_logprob)
                old_seq_logprob = seq_logprob.expand_as(candidate_logprob).contiguous()
                old_seq_logprob[:, :, 1:] = -999
                candidate_logprob = seq_mask * candidate_logprob + old_seq_logprob * (1 - seq_mask)

            # the best beam_size of the original's full descending sort
            selected_logprob, selected_idx = torch.topk(candidate_logprob.view(b_s, -1), beam_size, -1)
            selected_beam = torch.div(selected_idx, vocab_size, rounding_mode="floor")
            selected_words = selected_idx - selected_beam * vocab_size

            reorder = _select_beams(selected_beam, cur_beam_size, beam_size)
            # the encoder output (and its projection) is the same for every beam of an image: expanded once, at the
            # first step; afterwards reordering it within an image's beams would copy it unchanged
            model.apply_to_states(reorder, beam_shared=t == 0)
            if t == 0:
                enc_output, mask_enc = reorder(enc_output), reorder(mask_enc)

            seq_logprob = selected_logprob.unsqueeze(-1)
            seq_mask = torch.gather(seq_mask, 1, selected_beam.unsqueeze(-1))
            outputs = [torch.gather(o, 1, selected_beam.unsqueeze(-1)) for o in outputs]
            outputs.append(selected_words.unsqueeze(-1))
            this_word_logprob = torch.gather(word_logprob.view(b_s, -1), 1, selected_idx).unsqueeze(-1)
            log_probs = [torch.gather(o, 1, selected_beam.unsqueeze(-1).expand(b_s, beam_size, 1)) for o in log_probs]
            log_probs.append(this_word_logprob)
            words = selected_words.view(-1, 1)

    seq_logprob, sort_idxs = torch.sort(seq_logprob, 1, descending=True)
    tokens = torch.gather(torch.cat(outputs, -1), 1, sort_idxs.expand(b_s, beam_size, max_len))
    token_logprobs = torch.gather(torch.cat(log_probs, -1), 1, sort_idxs.expand(b_s, beam_size, max_len))
    tokens, token_logprobs = tokens[:, :out_size], token_logprobs[:, :out_size]
    if out_size == 1:
        return tokens.squeeze(1), token_logprobs.squeeze(1)
    return tokens, token_logprobs
