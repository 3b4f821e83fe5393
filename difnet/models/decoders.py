"""The M² Transformer decoder used by all four modes (not meshed: it attends to the final encoder output)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention
from .containers import StatefulModule, StatefulModuleList
from .feedforward import PositionWiseFeedForward
from .lrp import Recorder, RelLinear, add_relprop, clone_relprop


class DecoderLayer(StatefulModule, Recorder):
    def __init__(self, d_model: int, d_k: int, d_v: int, h: int, d_ff: int, dropout: float, *,
                 spare_norms: bool = False, fused: bool = False) -> None:
        super().__init__()
        self.self_att = MultiHeadAttention(d_model, d_k, d_v, h, dropout, can_be_stateful=True, spare_norm=spare_norms,
                                           fused=fused)
        self.enc_att = MultiHeadAttention(d_model, d_k, d_v, h, dropout, caches_memory=True, spare_norm=spare_norms,
                                          fused=fused)
        self.dropout1 = nn.Dropout(dropout)
        self.lnorm1 = nn.LayerNorm(d_model)
        self.dropout2 = nn.Dropout(dropout)
        self.lnorm2 = nn.LayerNorm(d_model)
        # mode `difnet`'s decoder FFN also owns an unused second LayerNorm (`pwff.layer_norm1`)
        self.pwff = PositionWiseFeedForward(d_model, d_ff, dropout, two_streams=spare_norms)

    def forward(self, input: torch.Tensor, enc_output: torch.Tensor, mask_pad: torch.Tensor,
                mask_self_att: torch.Tensor, mask_enc_att: torch.Tensor) -> torch.Tensor:
        self_att = self.dropout1(self.self_att(input, input, input, mask_self_att))
        self.record(input=input, self_att=self_att)
        self_att = self.lnorm1(input + self_att) * mask_pad
        enc_att = self.dropout2(self.enc_att(self_att, enc_output, enc_output, mask_enc_att))
        self.record(enc_input=self_att, enc_output=enc_output, enc_att=enc_att)
        enc_att = self.lnorm2(self_att + enc_att) * mask_pad
        return self.pwff(enc_att) * mask_pad

    def relprop(self, R: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevance of (layer input, encoder output); LayerNorms, dropouts and padding masks pass it through."""
        R = self.pwff.relprop(R, alpha)
        enc_input = self.saved("enc_input")
        R_res2, R_enc_att = add_relprop(enc_input, self.saved("enc_att"), R)
        R_sa, R_ek, R_ev = self.enc_att.relprop(R_enc_att, alpha)
        R_enc = clone_relprop(self.saved("enc_output"), R_ek, R_ev)
        R_sa = clone_relprop(enc_input, R_res2, R_sa)
        input = self.saved("input")
        R_res1, R_sa = add_relprop(input, self.saved("self_att"), R_sa)
        R_iq, R_ik, R_iv = self.self_att.relprop(R_sa, alpha)
        return clone_relprop(input, R_res1, R_iq, R_ik, R_iv), R_enc


class TransformerDecoder(StatefulModule):
    """Word + position embeddings, N decoder layers, a bias-free output layer and log-softmax."""

    def __init__(self, vocab_size: int, max_len: int, n_layers: int, padding_idx: int, d_model: int, d_k: int,
                 d_v: int, h: int, d_ff: int, dropout: float, *, spare_norms: bool = False, fused: bool = False) -> None:
        super().__init__()
        self.d_model = d_model
        self.word_emb = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        # a frozen (max_len + 1)-row position table, row 0 for pads; the original fills it with a sinusoid table
        # that the model's xavier init then overwrites with a fixed random matrix (M²), so no sinusoid is built
        self.pos_emb = nn.Embedding(max_len + 1, d_model)
        self.pos_emb.weight.requires_grad_(False)
        self.layers = StatefulModuleList(
            [DecoderLayer(d_model, d_k, d_v, h, d_ff, dropout, spare_norms=spare_norms, fused=fused)
             for _ in range(n_layers)])
        self.fc = RelLinear(d_model, vocab_size, bias=False)
        self.max_len = max_len
        self.padding_idx = padding_idx
        self.register_state("running_mask_self_attention", torch.zeros((1, 1, 0), dtype=torch.uint8))
        self.register_state("running_seq", torch.zeros((1,), dtype=torch.long))

    def forward(self, input: torch.Tensor, encoder_output: torch.Tensor, mask_encoder: torch.Tensor) -> torch.Tensor:
        """input (b, L) token ids -> (b, L, vocab) log-probabilities."""
        b_s, seq_len = input.shape[:2]
        mask_queries = (input != self.padding_idx).unsqueeze(-1).float()  # (b, L, 1)
        causal = torch.triu(torch.ones((seq_len, seq_len), dtype=torch.uint8, device=input.device), diagonal=1)
        mask_self_attention = causal.unsqueeze(0).unsqueeze(0) + (input == self.padding_idx).unsqueeze(1).unsqueeze(1).byte()
        mask_self_attention = mask_self_attention.gt(0)  # (b, 1, L, L)
        if self.is_stateful:
            self.running_mask_self_attention = torch.cat(
                [self.running_mask_self_attention.type_as(mask_self_attention), mask_self_attention], -1)
            mask_self_attention = self.running_mask_self_attention

        seq = torch.arange(1, seq_len + 1, device=input.device).view(1, -1).expand(b_s, -1)
        seq = seq.masked_fill(mask_queries.squeeze(-1) == 0, 0)
        if self.is_stateful:
            self.running_seq.add_(1)
            seq = self.running_seq
        if int(seq.max()) > self.max_len:
            raise ValueError(f"caption of {int(seq.max())} tokens exceeds the decoder's {self.max_len} positions")

        out = self.word_emb(input) + self.pos_emb(seq)
        for layer in self.layers:
            out = layer(out, encoder_output, mask_queries, mask_self_attention, mask_encoder)
        return F.log_softmax(self.fc(out), dim=-1)

    def relprop(self, R: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevance of (decoder input embeddings, encoder output summed over the layers)."""
        R = self.fc.relprop(R, alpha)
        R_enc = 0.0
        for layer in reversed(self.layers):
            R, R_e = layer.relprop(R, alpha)
            R_enc = R_enc + R_e
        return R, R_enc
