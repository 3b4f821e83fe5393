"""The captioner: bottom-up features (+ grid vectors) -> transformer encoder -> decoder with X-Linear cross attention."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .attention import MultiHeadedAttention, XLinearMultiHeadedAttention
from .caption_model import BeamOptions, beam_search
from .embeddings import Embeddings, PositionalEncoding, SpatialPositionalEncoding
from .encoder_decoder import (Decoder, DecoderLayer, Encoder, EncoderDecoder, EncoderLayer, Generator,
                              PositionwiseFeedForward)


@dataclass
class TransformerConfig:
    vocab_size: int = 9487  # words incl. UNK; the output layer has vocab_size + 1 classes (0 = BOS/EOS/pad)
    seq_length: int = 16
    num_layers: int = 6
    input_encoding_size: int = 512
    ff_size: int = 2048
    heads: int = 8
    img_feat_size: int = 2048
    dropout: float = 0.5  # the original uses --dropout for every dropout layer
    use_grid: bool = True
    num_grids: int = 144
    enc_pos_embedding: bool = True
    enc_pos_type: str = "gxg"
    cross_attn: str = "xlinear"
    norm: str = "layer"
    ff_activation: str = "RELU"


# step(it, state) -> (log-probs of the next word, state): one decoding step over a fixed image memory.
DecoderStep = Callable[[torch.Tensor, "list[torch.Tensor] | None"], "tuple[torch.Tensor, list[torch.Tensor]]"]


def subsequent_mask(size: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, size, size) bool, True on and below the diagonal."""
    return torch.ones(1, size, size, dtype=torch.bool, device=device).tril()


def clip_att(att_feats: torch.Tensor, boxes: torch.Tensor | None, att_masks: torch.Tensor | None):
    """Trim the box axis to the longest valid box count in the batch."""
    if att_masks is None:
        return att_feats, boxes, att_masks
    max_len = int(att_masks.long().sum(1).max())
    att_feats = att_feats[:, :max_len].contiguous()
    att_masks = att_masks[:, :max_len].contiguous()
    if boxes is not None:
        boxes = boxes[:, :max_len].contiguous()
    return att_feats, boxes, att_masks


class TransformerModel(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = cfg.vocab_size
        self.seq_length = cfg.seq_length
        d = cfg.input_encoding_size
        self.att_embed = nn.Sequential(nn.Linear(cfg.img_feat_size, d), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.model = self._make_model(cfg)

    @staticmethod
    def _make_model(cfg: TransformerConfig) -> EncoderDecoder:
        d, c = cfg.input_encoding_size, copy.deepcopy
        tgt_vocab = cfg.vocab_size + 1
        self_attn = MultiHeadedAttention(cfg.heads, d, cfg.dropout)
        if cfg.cross_attn == "xlinear":
            cross_attn: nn.Module = XLinearMultiHeadedAttention(1, d, dropout=cfg.dropout)  # one head, as the original
        elif cfg.cross_attn == "dot-product":
            cross_attn = MultiHeadedAttention(cfg.heads, d, cfg.dropout)
        else:
            raise ValueError(f"--cross_attn {cfg.cross_attn!r}: expected xlinear or dot-product")
        ff = PositionwiseFeedForward(d, cfg.ff_size, cfg.dropout, cfg.ff_activation)
        src_embed = (SpatialPositionalEncoding(cfg.num_grids, d, cfg.dropout, cfg.enc_pos_embedding, cfg.enc_pos_type)
                     if cfg.use_grid else None)
        model = EncoderDecoder(
            Encoder(EncoderLayer(d, c(self_attn), c(ff), cfg.norm, cfg.dropout), cfg.norm, cfg.num_layers),
            Decoder(DecoderLayer(d, c(self_attn), c(cross_attn), c(ff), cfg.norm, cfg.dropout), cfg.norm,
                    cfg.num_layers),
            src_embed,
            nn.Sequential(Embeddings(d, tgt_vocab), PositionalEncoding(d, cfg.dropout)),
            Generator(d, tgt_vocab))
        # Glorot init of every >=2-D parameter under `model` (att_embed keeps PyTorch's default init).
        for p in model.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        return model

    def prepare_features(self, att_feats: torch.Tensor, boxes: torch.Tensor | None, att_masks: torch.Tensor | None):
        """Embed valid boxes; returns (embedded feats, boxes, masks (B,1,P))."""
        att_feats, boxes, att_masks = clip_att(att_feats, boxes, att_masks)
        if att_masks is None:
            embedded = self.att_embed(att_feats)
            att_masks = att_feats.new_ones(att_feats.shape[:2], dtype=torch.long)
        else:
            embedded = self.embed_packed(att_feats, att_masks)
        return embedded, boxes, att_masks.unsqueeze(-2)

    def embed_packed(self, att_feats: torch.Tensor, att_masks: torch.Tensor) -> torch.Tensor:
        """att_embed on the valid boxes only; padded slots stay exactly zero.

        The boxes are packed as the original's pack_wrapper packs them (images sorted by box count, then step-major),
        so in training the dropout draws its masks over the same elements in the same order.
        """
        lengths, order = torch.sort(att_masks.long().sum(1), descending=True)
        packed = pack_padded_sequence(att_feats[order], lengths.cpu(), batch_first=True)
        embedded = PackedSequence(self.att_embed(packed.data), packed.batch_sizes)
        padded, _ = pad_packed_sequence(embedded, batch_first=True, total_length=att_feats.size(1))
        return padded[torch.argsort(order)]

    @staticmethod
    def target_mask(seq: torch.Tensor) -> torch.Tensor:
        """Causal mask AND non-pad mask; the BOS position is always visible."""
        mask = seq > 0
        mask[:, 0] = True
        return mask.unsqueeze(-2) & subsequent_mask(seq.size(-1), seq.device)

    def forward(self, att_feats: torch.Tensor, seq: torch.Tensor, att_masks: torch.Tensor | None = None,
                boxes: torch.Tensor | None = None) -> torch.Tensor:
        """seq (N, T+2) = [0, words, 0...]; returns log-probs (N, T+1, V+1) for targets seq[:, 1:]."""
        feats, boxes, masks = self.prepare_features(att_feats, boxes, att_masks)
        seq = seq[:, :-1]
        out = self.model(feats, seq, boxes, masks, self.target_mask(seq))
        return self.model.generator(out)

    def encode(self, att_feats: torch.Tensor, att_masks: torch.Tensor | None, boxes: torch.Tensor | None):
        feats, boxes, masks = self.prepare_features(att_feats, boxes, att_masks)
        return self.model.encode(feats, boxes, masks), masks

    def get_logprobs_state(self, it: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
                           state: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Log-probs of the next word given the words so far; the whole prefix is re-decoded (no cache), as in ORT.

        Kept as ``decode_cache=0`` (the original's cost, quadratic in the length) for the parity tests."""
        ys = it.unsqueeze(1) if state is None else torch.cat([state[0][0], it.unsqueeze(1)], dim=1)
        out = self.model.decode(memory, mask, ys, subsequent_mask(ys.size(1), memory.device))
        return self.model.generator(out[:, -1]), [ys.unsqueeze(0)]

    def get_logprobs_state_cached(self, it: torch.Tensor, memory_kv: list[tuple[torch.Tensor, torch.Tensor]],
                                  mask: torch.Tensor, state: list[torch.Tensor] | None
                                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The same log-probs from one decoder position per step: ``state`` holds every layer's self-attention keys
        and values of the earlier positions as (1, B, heads, t, d_k) tensors (batch on dim 1, so that beam search
        reorders them like any other state)."""
        past = None if state is None else [(state[i][0], state[i + 1][0]) for i in range(0, len(state), 2)]
        out, kv = self.model.decode_step(memory_kv, mask, it, past)
        return self.model.generator(out[:, -1]), [t.unsqueeze(0) for pair in kv for t in pair]

    def compile_decoding(self) -> None:
        """torch.compile the cached decoder's one-position step (eval.py --compile 1); its shapes are marked
        dynamic because the cache grows by one position per step."""
        self.model.decoder.step = torch.compile(self.model.decoder.step, dynamic=True)

    def decoder_step(self, memory: torch.Tensor, mask: torch.Tensor, cached: bool) -> DecoderStep:
        """step(it, state) -> (log-probs, state) over ``memory``; the cached kind projects the memory once here."""
        if not cached:
            return lambda it, state: self.get_logprobs_state(it, memory, mask, state)
        memory_kv = self.model.decoder.project_memory(memory)
        return lambda it, state: self.get_logprobs_state_cached(it, memory_kv, mask, state)

    def sample(self, att_feats: torch.Tensor, att_masks: torch.Tensor | None = None,
               boxes: torch.Tensor | None = None, opt: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy (sample_max=1), multinomial (sample_max=0) or beam (beam_size>1) decoding -> (seq, logprobs).

        ``decode_cache`` (default 1) decodes one position per step with cached keys/values; 0 re-decodes the whole
        prefix at every step as the original did (same words; log-probs equal up to float rounding)."""
        opt = opt or {}
        if opt.get("beam_size", 1) > 1:
            return self.sample_beam(att_feats, att_masks, boxes, BeamOptions.from_dict(opt),
                                    bool(opt.get("decode_cache", 1)))
        sample_max = opt.get("sample_max", 1)
        temperature = opt.get("temperature", 1.0)
        decoding_constraint = opt.get("decoding_constraint", 0)
        memory, masks = self.encode(att_feats, att_masks, boxes)
        step = self.decoder_step(memory, masks, bool(opt.get("decode_cache", 1)))
        batch = memory.size(0)
        seq = memory.new_zeros((batch, self.seq_length), dtype=torch.long)
        seq_logprobs = memory.new_zeros(batch, self.seq_length)
        it = memory.new_zeros(batch, dtype=torch.long)
        state = None
        unfinished = torch.ones(batch, dtype=torch.bool, device=memory.device)
        for t in range(self.seq_length):
            logprobs, state = step(it, state)
            if decoding_constraint and t > 0:
                logprobs = logprobs.scatter(1, seq[:, t - 1].unsqueeze(1), float("-inf"))
            if sample_max:
                sample_logprobs, it = torch.max(logprobs.detach(), 1)
            else:
                # The original exponentiates logprobs/temperature without renormalising (multinomial does it).
                probs = torch.exp(logprobs.detach() / temperature)
                it = torch.multinomial(probs, 1)
                sample_logprobs = logprobs.gather(1, it).view(-1)
                it = it.view(-1)
            unfinished = unfinished & (it > 0)
            it = it * unfinished.long()
            seq[:, t] = it
            seq_logprobs[:, t] = sample_logprobs
            if not unfinished.any():
                break
        return seq, seq_logprobs

    def sample_beam(self, att_feats: torch.Tensor, att_masks: torch.Tensor | None, boxes: torch.Tensor | None,
                    opt: BeamOptions, cached: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Beam search image by image (as the original); keeps all finished beams in ``self.done_beams``."""
        memory, masks = self.encode(att_feats, att_masks, boxes)
        batch, beam = memory.size(0), opt.beam_size
        seq = torch.zeros(self.seq_length, batch, dtype=torch.long)
        seq_logprobs = torch.zeros(self.seq_length, batch)
        self.done_beams = []
        for k in range(batch):
            if cached:  # one copy of the image's memory keys/values serves every beam and group (broadcast)
                image_step = self.decoder_step(memory[k:k + 1], masks[k:k + 1], True)
                group_steps = [image_step] * opt.group_size
            else:
                mem_k = memory[k:k + 1].expand(beam, *memory.shape[1:]).contiguous()
                mask_k = masks[k:k + 1].expand(beam, *masks.shape[1:]).contiguous()
                image_step = self.decoder_step(mem_k, mask_k, False)
                group_steps = [self.decoder_step(m, msk, False)
                               for m, msk in zip(mem_k.chunk(opt.group_size), mask_k.chunk(opt.group_size))]
            logprobs, state = image_step(memory.new_zeros(beam, dtype=torch.long), None)
            beams = beam_search(lambda group, it, state: group_steps[group](it, state), state, logprobs,
                                self.seq_length, opt)
            self.done_beams.append(beams)
            seq[:, k] = beams[0]["seq"]
            seq_logprobs[:, k] = beams[0]["logps"]
        return seq.t().to(memory.device), seq_logprobs.t().to(memory.device)
