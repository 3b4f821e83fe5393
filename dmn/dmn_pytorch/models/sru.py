"""The SRU DMN was trained with (taolei87/sru@43c85ed), rebuilt on sru 2.6.0.

sru 2.x changed the recurrence: identity activation and a learned peephole ``weight_c`` by default, and two new
state_dict entries per layer (``weight_c``, ``scale_x``). With ``use_tanh=True, v1=True, rescale=False,
highway_bias=0`` it computes the old SRU (measured within 4e-7), with ``weight_c`` = 0 and ``scale_x`` unused.
Here those two tensors are fixed, non-persistent buffers, so ``state_dict()`` has exactly the old keys
(``rnn_lst.<i>.weight``, ``rnn_lst.<i>.bias``) and the released weights load unchanged.
"""
from __future__ import annotations

import logging
import warnings

import torch
from torch import nn


def _import_sru():
    # sru compiles its CPU kernel on first import (~40 s, cached afterwards) and warns about missing CUDA kernels.
    cpp_extension_log = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_extension_log.level
    cpp_extension_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sru
    cpp_extension_log.setLevel(level)
    return sru


_sru = _import_sru()
# sru's CPU training path warns on every call that it runs a Python loop; that loop is what we want on CPU.
warnings.filterwarnings("ignore", message="Running SRU on CPU with grad_enabled=True")

_cuda_kernel_failed = False
# Values of the sru 2.x-only tensors under which sru 2.6.0 equals the old SRU.
OLD_SRU_FILL = {"weight_c": 0.0, "scale_x": 1.0}


class OldSRU(nn.Module):
    """Stacked SRU with the old (2017) semantics: tanh on the cell, no peephole, no rescaling, highway bias 0."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.hidden_size = hidden_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # use_tanh is deprecated in sru 2.x, and is what the old SRU did
            self.rnn_lst = _sru.SRU(
                input_size, hidden_size, num_layers=num_layers, use_tanh=True, v1=True, rescale=False, highway_bias=0.0
            ).rnn_lst
        for cell in self.rnn_lst:
            weight_c = torch.full_like(cell.weight_c.data, OLD_SRU_FILL["weight_c"])
            del cell.weight_c
            cell.register_buffer("weight_c", weight_c, persistent=False)
            scale_x = torch.full_like(cell.scale_x, OLD_SRU_FILL["scale_x"])
            del cell.scale_x
            cell.register_buffer("scale_x", scale_x, persistent=False)

    def forward(self, x: torch.Tensor, mask_pad: torch.Tensor | None = None) -> torch.Tensor:
        """x: (length, batch, input_size); mask_pad: (length, batch), True where the position is padding (skipped:
        the cell state carries over and the output is 0). Returns the last layer's hidden states.

        With gradients on CPU, sru 2.6.0 falls back to a Python loop over time (one autograd node per step and
        gate), far too slow for the mSRU's h*w*T-step sequence; there the recurrence runs as a parallel scan
        (same maths, see ``old_sru_layer_scan``). Float64 input (the parity tests) also takes the scan: sru's
        kernels are float32 only. Otherwise sru's own kernels run.
        """
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        # sru's kernels take float32 only: under bf16 autocast its compute_U would hand them a bfloat16 U.
        with torch.autocast(x.device.type, enabled=False):
            return self._recurrence(x, mask_pad)

    def _recurrence(self, x: torch.Tensor, mask_pad: torch.Tensor | None) -> torch.Tensor:
        global _cuda_kernel_failed
        use_scan = ((torch.is_grad_enabled() and not x.is_cuda) or (x.is_cuda and _cuda_kernel_failed)
                    or x.dtype == torch.float64)
        if use_scan:
            for cell in self.rnn_lst:
                x = old_sru_layer_scan(cell, x, mask_pad)
            return x
        try:
            h = x
            for cell in self.rnn_lst:
                h = cell(h, mask_pad=mask_pad)[0]
            return h
        except RuntimeError:
            if not x.is_cuda:
                raise
            # sru compiles its CUDA kernel at import; without nvcc it installs a stub that raises here.
            _cuda_kernel_failed = True
            return self._recurrence(x, mask_pad)


def linear_recurrence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """c_t = a_t * c_{t-1} + b_t with c_{-1} = 0, over dim 0, as a log2(length)-step Hillis-Steele scan."""
    length = a.size(0)
    shift = 1
    while shift < length:
        b = torch.cat([b[:shift], b[shift:] + a[shift:] * b[:-shift]])
        a = torch.cat([a[:shift], a[shift:] * a[:-shift]])
        shift *= 2
    return b


def old_sru_layer_scan(cell: nn.Module, x: torch.Tensor, mask_pad: torch.Tensor | None) -> torch.Tensor:
    """One old-SRU layer: f = sigmoid(W_f x + b_f), r = sigmoid(W_r x + b_r), c_t = f c_{t-1} + (1 - f) W x,
    h = r tanh(c) + (1 - r) x' (x' = x, or a projection of x when the widths differ)."""
    length, batch, _ = x.shape
    hidden = cell.hidden_size
    u = cell.compute_U(x).view(length, batch, hidden, cell.num_matrices)
    forget_bias, reset_bias = cell.bias.view(2, hidden)
    forget = torch.sigmoid(u[..., 1] + forget_bias)
    reset = torch.sigmoid(u[..., 2] + reset_bias)
    skip = x if cell.num_matrices == 3 else u[..., 3]
    a, b = forget, (1 - forget) * u[..., 0]
    if mask_pad is not None:
        pad = mask_pad[..., None].to(torch.bool)
        a = torch.where(pad, torch.ones_like(a), a)
        b = torch.where(pad, torch.zeros_like(b), b)
    c = linear_recurrence(a, b)
    h = reset * torch.tanh(c) + (1 - reset) * skip
    if mask_pad is not None:
        h = h.masked_fill(pad, 0.0)
    return h


def fill_new_sru_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop sru 2.x ``weight_c``/``scale_x`` entries after checking they hold the old-SRU values.

    A checkpoint saved by a model built on sru 2.x defaults (learned ``weight_c``) computes different maths; it
    cannot be converted and is refused.
    """
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        leaf = key.rsplit(".", 1)[-1]
        if "rnn_lst." in key and leaf in OLD_SRU_FILL:
            expected = OLD_SRU_FILL[leaf]
            if leaf == "weight_c" and not torch.all(value == expected):
                raise ValueError(
                    f"checkpoint key {key} holds a learned SRU peephole (sru 2.x defaults); DMN's SRU has none"
                )
            continue
        cleaned[key] = value
    return cleaned
