"""ZSGNet / GIN: BiLSTM phrase encoder, language-conditioned visual backbone, one shared head over all pyramid levels."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .backbone import RetinaBackBone


def conv_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


def head_subnet(cin: int, n_out: int, n_anchors: int, chs: int, n_conv: int, final_bias: torch.Tensor | float) -> nn.Sequential:
    """(1 + n_conv) x [conv3x3 + ReLU] then conv3x3 to n_out * n_anchors, whose bias is ``final_bias``."""
    layers = [conv_relu(cin, chs)] + [conv_relu(chs, chs) for _ in range(n_conv)]
    last = nn.Conv2d(chs, n_out * n_anchors, 3, padding=1)
    with torch.no_grad():
        last.bias.zero_().add_(final_bias)
    return nn.Sequential(*layers, last)


class ZSGNet(nn.Module):
    def __init__(self, backbone: RetinaBackBone, n_anchors: int = 9, *, emb_dim: int = 300, lstm_dim: int = 128,
                 bidirectional: bool = True, fpn_dim: int = 256, head_dim: int = 256, head_convs: int = 4,
                 use_same_atb: bool = True, lstm_init: str = "random") -> None:
        super().__init__()
        if lstm_init not in ("random", "zeros"):
            raise ValueError(f"lstm_init must be 'random' or 'zeros', got {lstm_init!r}")
        self.backbone = backbone
        self.n_anchors = n_anchors
        self.lstm_dim = lstm_dim
        self.n_dirs = 2 if bidirectional else 1
        self.lstm_init = lstm_init
        self.use_same_atb = use_same_atb
        cin = fpn_dim + lstm_dim * self.n_dirs + 2
        if use_same_atb:
            bias = torch.zeros(5 * n_anchors)
            bias[4::5] = -4  # score channel of every anchor starts at sigmoid(-4)
            self.att_reg_box = head_subnet(cin, 5, n_anchors, head_dim, head_convs, bias)
        else:  # legacy two-head variant of the original (not the paper's)
            self.att_box = head_subnet(cin, 1, n_anchors, head_dim, head_convs, -4.0)
            self.reg_box = head_subnet(cin, 4, n_anchors, head_dim, head_convs, 0.0)
        self.lstm = nn.LSTM(emb_dim, lstm_dim, bidirectional=bidirectional)

    def initial_state(self, qvec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) for a batch of phrases, on qvec's device and in its dtype."""
        shape = (self.n_dirs, qvec.shape[0], self.lstm_dim)
        if self.lstm_init == "zeros":
            return qvec.new_zeros(shape), qvec.new_zeros(shape)
        # Original behaviour: a fresh torch.randn (h, c) on every forward, drawn on the CPU generator.
        return torch.randn(shape).to(qvec), torch.randn(shape).to(qvec)

    def encode_phrase(self, qvec: torch.Tensor, qlens: torch.Tensor) -> torch.Tensor:
        """B x T x E word vectors -> B x (dirs*L): the padded BiLSTM output at position qlen-1.

        Original behaviour: the backward direction there has only read the last token.
        """
        lens, perm = qlens.long().sort(0, descending=True)
        packed = pack_padded_sequence(qvec[perm].transpose(0, 1), lens.cpu(), batch_first=False)
        out, _ = self.lstm(packed, self.initial_state(qvec))
        out, _ = pad_packed_sequence(out, batch_first=False, total_length=qvec.shape[1])  # T x B x D
        last = out[lens - 1, torch.arange(out.shape[1], device=out.device)]
        result = torch.empty_like(last)
        result[perm] = last
        return result

    def flatten_level(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """B x (A*n) x H x W -> B x (H*W*A) x n: order row, column, anchor."""
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, n)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        qlens = batch["qlens"]
        max_qlen = int(qlens.max().item())
        lang = self.encode_phrase(batch["qvec"][:, :max_qlen].contiguous(), qlens)
        feats, att_maps = self.backbone(batch["img"], lang)
        if self.use_same_atb:
            out = torch.cat([self.flatten_level(self.att_reg_box(f), 5) for f in feats], dim=1)
            att_out, bbx_out = out[..., [-1]], out[..., :-1]
        else:
            att_out = torch.cat([self.flatten_level(self.att_box(f), 1) for f in feats], dim=1)
            bbx_out = torch.cat([self.flatten_level(self.reg_box(f), 4) for f in feats], dim=1)
        return {
            "att_out": att_out,  # B x N x 1 score logits
            "bbx_out": bbx_out,  # B x N x 4 (dy, dx, dh, dw)
            "feat_sizes": torch.tensor([[f.shape[2], f.shape[3]] for f in feats], device=att_out.device),
            "num_f_out": torch.tensor([len(feats)], device=att_out.device),
            "att_maps": att_maps,  # GIN: three B x H x W collect logits; ZSGNet: empty
        }
