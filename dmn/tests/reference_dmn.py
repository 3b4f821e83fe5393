"""A literal, one-sample restatement of the original DMN forward (BCV-Uniandes/DMS models/dmn.py) and of the
old SRU recurrence (taolei87/sru@43c85ed), written from their definitions to check the optimised model against.

Everything here runs step by step, as the original did: per-cell location maps, one conv per time step, the full
concatenated multimodal tensor through comb_conv, the pixel-major sequence through a sequential SRU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def old_sru(layers, x: torch.Tensor) -> torch.Tensor:
    """Sequential old SRU: per layer U = x W viewed (hidden, k); f, r gates with the (forget, reset) bias;
    c_t = f c_{t-1} + (1 - f) u0; h_t = r tanh(c_t) + (1 - r) skip, skip = x (k = 3) or u3 (k = 4)."""
    for cell in layers:
        hidden = cell.weight.shape[1] // cell.num_matrices
        length, batch, _ = x.shape
        u = (x.reshape(-1, x.shape[-1]) @ cell.weight).view(length, batch, hidden, cell.num_matrices)
        bf, br = cell.bias[:hidden], cell.bias[hidden:]
        c = torch.zeros(batch, hidden)
        outs = []
        for t in range(length):
            f = torch.sigmoid(u[t, :, :, 1] + bf)
            r = torch.sigmoid(u[t, :, :, 2] + br)
            c = f * c + (1 - f) * u[t, :, :, 0]
            skip = x[t] if cell.num_matrices == 3 else u[t, :, :, 3]
            outs.append(r * torch.tanh(c) + (1 - r) * skip)
        x = torch.stack(outs)
    return x


def spatial_maps(height: int, width: int) -> torch.Tensor:
    grid = np.zeros((1, 8, height, width), dtype=np.float32)
    for h in range(height):
        for w in range(width):
            xmin = w / width * 2 - 1
            xmax = (w + 1) / width * 2 - 1
            ymin = h / height * 2 - 1
            ymax = (h + 1) / height * 2 - 1
            grid[0, :, h, w] = [xmin, ymin, xmax, ymax, (xmin + xmax) / 2, (ymin + ymax) / 2, 1 / width, 1 / height]
    return torch.from_numpy(grid)


def reference_forward(model, img: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """The original DMN.forward for img (1, 3, H, W), words (1, T)."""
    base = model.langvis
    vis, features = base.base(img)
    _, _, height, width = vis.shape
    vis = torch.cat([vis, spatial_maps(height, width)], dim=1)
    lang = base.emb(words).transpose(0, 1)  # (T, 1, E)
    steps = lang.size(0)
    linear_in = [lang.squeeze(1)] if base.mix_we else []
    lang_mix = [lang[..., None, None].expand(*lang.shape, height, width)]
    hid = old_sru(base.lang_model.rnn_lst, lang)
    lang_mix.append(hid[..., None, None].expand(*hid.shape, height, width))
    linear_in = torch.cat(linear_in + [hid.squeeze(1)], dim=1) if base.mix_we else hid
    filters = torch.sigmoid(base.adaptative_filter(linear_in.squeeze()))
    filters = filters.view(steps, base.num_filters, base.vis_size + 8, 1, 1)
    responses = torch.cat([F.conv2d(vis, filters[t]).unsqueeze(0) for t in range(steps)])
    q = torch.cat([vis.unsqueeze(0).expand(steps, *vis.shape), torch.cat(lang_mix, dim=2), responses], dim=2)
    q = base.comb_conv(q.squeeze(1)).unsqueeze(1)
    q = q.view(q.size(0), q.size(1), q.size(2), height * width).permute(3, 0, 1, 2).contiguous()
    q = q.view(q.size(0) * q.size(1), q.size(2), q.size(3))
    out = old_sru(base.mrnn.rnn_lst, q)
    out = out[-(height * width):].permute(1, 2, 0).contiguous().view(1, -1, height, width)
    if not model.high_res:
        return base.output_collapse(out)
    up = model.upsample
    level = len(features) - 1
    for seq in up.convs:
        feature = features[level]
        if out.shape[-2:] != feature.shape[-2:]:
            out = F.interpolate(out, size=feature.shape[-2:], mode="bilinear", align_corners=True)
        out = torch.cat([out, feature], dim=1)
        out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
        out = seq[1](out)
        level -= 1
    return up.out_layer(out)
