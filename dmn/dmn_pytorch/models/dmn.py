"""Dynamic Multimodal Network (Margffoy-Tuay et al., ECCV 2018).

``BaseDMN``: visual module (DPN), language module (embedding + SRU), synthesis module (location maps, dynamic
filters, 1x1 fusion conv, multimodal SRU) and the low-resolution head. ``UpsamplingModule``: the high-resolution
decoder over the DPN feature pyramid. ``DMN``: the two together, with the original's attribute names
(``langvis``, ``upsample``) so checkpoint keys match the released weights.

The original only ran one sample at a time. Here every step also takes a batch: words are right-padded and
``lengths`` marks the real tokens; padded steps are skipped by the recurrences (their cell state carries over),
so a sample gives the same logits alone or in a batch (up to BatchNorm statistics in train mode).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dpn import create_dpn
from .sru import OldSRU

NUM_LOCATION_MAPS = 8


def resize_kwargs(mode: str) -> dict:
    # The original ran on torch <= 0.3, whose bilinear resampling aligned corners (today's default does not).
    return {"align_corners": True} if mode in ("linear", "bilinear", "bicubic", "trilinear") else {}


def location_maps(height: int, width: int) -> torch.Tensor:
    """(1, 8, height, width) cell coordinates in [-1, 1]: xmin, ymin, xmax, ymax, xcentre, ycentre, 1/w, 1/h.

    Computed in float64 then stored as float32, as the original's per-cell Python loop did.
    """
    xmin = np.arange(width) / width * 2 - 1
    xmax = (np.arange(width) + 1) / width * 2 - 1
    ymin = np.arange(height) / height * 2 - 1
    ymax = (np.arange(height) + 1) / height * 2 - 1
    grid = np.zeros((1, NUM_LOCATION_MAPS, height, width), dtype=np.float32)
    grid[0, 0] = xmin[None, :]
    grid[0, 1] = ymin[:, None]
    grid[0, 2] = xmax[None, :]
    grid[0, 3] = ymax[:, None]
    grid[0, 4] = ((xmin + xmax) / 2)[None, :]
    grid[0, 5] = ((ymin + ymax) / 2)[:, None]
    grid[0, 6] = 1 / width
    grid[0, 7] = 1 / height
    return torch.from_numpy(grid)


def padding_mask(lengths: torch.Tensor | None, steps: int, batch: int, device: torch.device) -> torch.Tensor | None:
    """(steps, batch) bool, True on padded positions; None when nothing is padded."""
    if lengths is None:
        return None
    mask = torch.arange(steps, device=device)[:, None] >= lengths.to(device)[None, :]
    return mask if bool(mask.any()) else None


class BaseDMN(nn.Module):
    """Language, visual and synthesis modules; returns the multimodal map (and the DPN feature pyramid).

    ``per_pixel_msru=False`` (default) reproduces the as-built multimodal SRU: the (T, h, w) multimodal vectors are
    flattened pixel-major into ONE sequence of length h*w*T, and the last h*w outputs are reshaped into the map.
    ``per_pixel_msru=True`` runs the recurrence the paper describes: over time, separately for each pixel, keeping
    each pixel's last step. Both have the same parameters.
    """

    def __init__(self, dict_size: int, emb_size: int = 1000, hid_size: int = 1000, vis_size: int = 2688,
                 num_filters: int = 10, mixed_size: int = 1000, hid_mixed_size: int = 1005, lang_layers: int = 3,
                 mixed_layers: int = 3, backend: str = "dpn92", mix_we: bool = True, lstm: bool = False,
                 high_res: bool = False, per_pixel_msru: bool = False):
        super().__init__()
        self.high_res = high_res
        self.vis_size = vis_size
        self.num_filters = num_filters
        self.mix_we = mix_we
        self.lstm = lstm
        self.per_pixel_msru = per_pixel_msru
        self.base = create_dpn(backend)
        if self.base.out_channels != vis_size:
            raise ValueError(
                f"--vis-size {vis_size} does not match --backend {backend}, which outputs {self.base.out_channels} "
                f"channels; pass --vis-size {self.base.out_channels}"
            )
        self.emb = nn.Embedding(dict_size, emb_size)
        self.lang_model = (nn.LSTM(emb_size, hid_size, num_layers=lang_layers) if lstm
                           else OldSRU(emb_size, hid_size, lang_layers))
        filter_in = hid_size + emb_size * int(mix_we)
        self.adaptative_filter = nn.Linear(filter_in, num_filters * (vis_size + NUM_LOCATION_MAPS))
        self.comb_conv = nn.Conv2d(NUM_LOCATION_MAPS + emb_size + hid_size + vis_size + num_filters, mixed_size,
                                   kernel_size=1, padding=0)
        self.mrnn = (nn.LSTM(mixed_size, hid_mixed_size, num_layers=mixed_layers) if lstm
                     else OldSRU(mixed_size, hid_mixed_size, mixed_layers))
        if not high_res:
            self.output_collapse = nn.Conv2d(hid_mixed_size, 1, kernel_size=1)

    def _recur(self, rnn: nn.Module, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        if self.lstm:
            # nn.LSTM has no padding mask: right padding leaves earlier steps alone, but the pixel-major mSRU
            # sequence interleaves padding, so mixed lengths in one batch are refused.
            if pad is not None:
                raise ValueError("--lstm supports only batches whose queries have the same length")
            return rnn(x)[0]
        return rnn(x, pad)

    def forward(self, img: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """img (B, 3, H, W), words (B, T) right-padded, lengths (B,) or None (all T).

        Returns the map (B, 1, h, w) low-res or (B, hid_mixed_size, h, w) high-res, with h, w = H/32, W/32, and the
        five DPN feature maps.
        """
        vis, features = self.base(img)
        batch, _, height, width = vis.shape
        loc = location_maps(height, width).to(device=vis.device, dtype=vis.dtype)
        vis = torch.cat([vis, loc.expand(batch, -1, -1, -1)], dim=1)  # (B, C+8, h, w)

        steps = words.size(1)
        pad = padding_mask(lengths, steps, batch, words.device)
        emb = self.emb(words).transpose(0, 1)  # (T, B, E)
        hid = self._recur(self.lang_model, emb, pad).to(emb.dtype)  # (T, B, H)
        lang = torch.cat([emb, hid], dim=-1)
        filter_in = lang if self.mix_we else hid
        # Dynamic filters: sigmoid of a linear map of [e_t; h_t], one set of 1x1 filters per time step.
        filters = torch.sigmoid(self.adaptative_filter(filter_in))
        filters = filters.view(steps, batch, self.num_filters, self.vis_size + NUM_LOCATION_MAPS)
        responses = torch.einsum("tbkc,bchw->tbkhw", filters, vis)  # (T, B, K, h, w)

        # comb_conv over the concat [vis; e_t; h_t; F_t] (tiled over pixels), evaluated block by block: the visual
        # part once per image instead of once per step. Same linear map as the original's single 1x1 conv.
        weight = self.comb_conv.weight.flatten(1)
        c_vis, c_lang = vis.size(1), lang.size(-1)
        w_vis, w_lang, w_resp = weight.split([c_vis, c_lang, self.num_filters], dim=1)
        q_vis = F.conv2d(vis, w_vis[:, :, None, None], self.comb_conv.bias)  # (B, M, h, w)
        q_lang = lang @ w_lang.t()  # (T, B, M)
        q_resp = torch.einsum("mk,tbkhw->tbmhw", w_resp, responses)
        q = q_vis.unsqueeze(0) + q_lang[..., None, None] + q_resp  # (T, B, M, h, w)

        out = self._multimodal_recurrence(q, pad, lengths)
        if not self.high_res:
            out = self.output_collapse(out)
        return out, features

    def _multimodal_recurrence(self, q: torch.Tensor, pad: torch.Tensor | None, lengths: torch.Tensor | None
                               ) -> torch.Tensor:
        steps, batch, mixed, height, width = q.shape
        cells = height * width
        device = q.device
        lengths = torch.full((batch,), steps, device=device) if lengths is None else lengths.to(device)
        if self.per_pixel_msru:
            seq = q.permute(0, 1, 3, 4, 2).reshape(steps, batch * cells, mixed)
            seq_pad = None if pad is None else pad[:, :, None].expand(-1, -1, cells).reshape(steps, batch * cells)
            out = self._recur(self.mrnn, seq, seq_pad)  # (T, B*hw, Hm)
            last = (lengths - 1).repeat_interleave(cells)  # (B*hw,)
            out = out.gather(0, last[None, :, None].expand(1, -1, out.size(-1)))[0]
            return out.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous().to(q.dtype)
        # As built: pixel-major single sequence (all T steps of pixel 0, then pixel 1, ...), so the recurrence
        # runs across pixels; the last h*w positions become the map (original BaseDMN.forward).
        seq = q.permute(3, 4, 0, 1, 2).reshape(cells * steps, batch, mixed)
        seq_pad = None if pad is None else pad[None].expand(cells, -1, -1).reshape(cells * steps, batch)
        out = self._recur(self.mrnn, seq, seq_pad)  # (hw*T, B, Hm)
        # Position j of the map is index hw*T_b - hw + j of sample b's unpadded sequence: pixel q//T_b, step q%T_b.
        unpadded = cells * lengths[None, :] - cells + torch.arange(cells, device=device)[:, None]  # (hw, B)
        index = (unpadded // lengths) * steps + unpadded % lengths
        out = out.gather(0, index[..., None].expand(-1, -1, out.size(-1)))  # (hw, B, Hm)
        return out.permute(1, 2, 0).reshape(batch, -1, height, width).to(q.dtype)


class UpsamplingModule(nn.Module):
    """High-resolution decoder: n = log2(amplification) steps of [resize to the feature's size if needed, concat
    the DPN feature, x2 upsample, conv]; then a 1x1 conv to one channel."""

    def __init__(self, in_channels: int, feature_channels: list[int], mode: str = "bilinear", ker_size: int = 3,
                 amplification: int = 32, first_width: int = 512):
        super().__init__()
        num_layers = int(math.log2(amplification))
        if 2**num_layers != amplification or not 1 <= num_layers <= len(feature_channels):
            raise ValueError(f"--upsamp-amplification must be a power of two from 2 to {2 ** len(feature_channels)}; "
                             f"got {amplification}")
        self.mode = mode
        self.up = nn.Upsample(scale_factor=2, mode=mode, **resize_kwargs(mode))
        # Widths 512, 256, ... (512 ... 32 for 32x), as the original's np.logspace(9, 10 - n, n, base=2);
        # `first_width` (not in the original, default 512) scales them down for small CPU runs.
        widths = [max(first_width >> k, 1) for k in range(num_layers)]
        convs = []
        for width, feat in zip(widths, feature_channels):
            conv = nn.Conv2d(in_channels + feat, width, kernel_size=ker_size, padding=ker_size // 2)
            convs.append(nn.Sequential(self.up, conv))
            in_channels = width
        # Registered before `convs` so the state_dict order matches the original checkpoints.
        self.out_layer = nn.Conv2d(in_channels, 1, kernel_size=1, padding=0)
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        level = len(features) - 1
        for conv in self.convs:
            feature = features[level]
            if x.shape[-2:] != feature.shape[-2:]:
                x = F.interpolate(x, size=feature.shape[-2:], mode="bilinear", **resize_kwargs("bilinear"))
            x = conv(torch.cat([x, feature], dim=1))
            level -= 1
        return self.out_layer(x)


class DMN(nn.Module):
    """BaseDMN (low-res logits at /32) or, with ``high_res``, BaseDMN + UpsamplingModule (logits at /32*amp)."""

    def __init__(self, dict_size: int, emb_size: int = 1000, hid_size: int = 1000, vis_size: int = 2688,
                 num_filters: int = 10, mixed_size: int = 1000, hid_mixed_size: int = 1005, lang_layers: int = 3,
                 mixed_layers: int = 3, backend: str = "dpn92", mix_we: bool = True, lstm: bool = False,
                 high_res: bool = False, upsampling_mode: str = "bilinear", upsampling_size: int = 3,
                 upsampling_amplification: int = 32, dmn_freeze: bool = False, per_pixel_msru: bool = False,
                 upsampling_width: int = 512):
        super().__init__()
        self.langvis = BaseDMN(dict_size, emb_size, hid_size, vis_size, num_filters, mixed_size, hid_mixed_size,
                               lang_layers, mixed_layers, backend, mix_we, lstm, high_res, per_pixel_msru)
        self.high_res = high_res
        self.dmn_freeze = dmn_freeze
        if high_res:
            feature_channels = self.langvis.base.feature_channels[::-1]
            self.upsample = UpsamplingModule(hid_mixed_size, feature_channels, mode=upsampling_mode,
                                             ker_size=upsampling_size, amplification=upsampling_amplification,
                                             first_width=upsampling_width)
        if dmn_freeze:
            # Original: BaseDMN put in eval mode once here (any later net.train() undoes it).
            self.langvis.eval()

    def forward(self, img: torch.Tensor, words: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, features = self.langvis(img, words, lengths)
        if self.dmn_freeze:
            # Original: only the BaseDMN output is detached; DPN features feeding the upsampling path keep gradients.
            out = out.detach()
        if self.high_res:
            out = self.upsample(out, features)
        return out
