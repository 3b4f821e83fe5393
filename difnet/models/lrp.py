"""Layer-wise relevance propagation rules of DIFNet's LRP modes (from Transformer-Explainability's layers_lrp).

Modules that take part in relevance propagation record their inputs during a forward pass run inside
``recording(model)``; ``relprop`` then redistributes a relevance tensor onto those inputs. The rules, as in the
original:

* Linear: alpha-beta rule on the positive and negative parts of inputs and weights (alpha=1 keeps z+); no bias.
* Add: gradient x input for both operands, then the total is split between them by the share of |sum|.
* Clone (a tensor used n times): relevances of the uses are summed (divided by and multiplied back by the input).
* MatMul (the two attention products): gradient x input for both operands.
* LayerNorm, Dropout, Softmax and ReLU pass relevance through unchanged, so they need no code here.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def safe_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / (b + 1e-9), and 0 where b == 0: the exact stabiliser of the original, kept for value parity."""
    den = b.clamp(min=1e-9) + b.clamp(max=1e-9)
    den = den + den.eq(0).type(den.type()) * 1e-9
    return a / den * b.ne(0).type(b.type())


class Recorder(nn.Module):
    """Mixin: ``self.record(name, tensor)`` keeps a detached copy while the model is recording."""

    recording = False

    def record(self, **tensors: torch.Tensor) -> None:
        if self.recording:
            for name, tensor in tensors.items():
                setattr(self, "_saved_" + name, tensor.detach())

    def saved(self, name: str) -> torch.Tensor:
        try:
            return getattr(self, "_saved_" + name)
        except AttributeError:
            raise RuntimeError("relprop needs a forward pass run inside models.lrp.recording(model)") from None


@contextmanager
def recording(model: nn.Module):
    """Run forward passes whose inputs ``relprop`` needs (the original keeps them with forward hooks)."""
    recorders = [m for m in model.modules() if isinstance(m, Recorder)]
    for m in recorders:
        m.recording = True
    try:
        yield
    finally:
        for m in recorders:
            m.recording = False


class RelLinear(nn.Linear, Recorder):
    """nn.Linear (same parameters and state-dict keys) with the alpha-beta relevance rule."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self.record(input=input)
        return super().forward(input)

    def relprop(self, R: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        x = self.saved("input")
        pw, nw = self.weight.detach().clamp(min=0), self.weight.detach().clamp(max=0)
        px, nx = x.clamp(min=0), x.clamp(max=0)

        def share(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
            z = F.linear(px, w1) + F.linear(nx, w2)
            s = safe_divide(R, z)
            return px * (s @ w1) + nx * (s @ w2)

        beta = alpha - 1
        relevance = alpha * share(pw, nw)
        if beta:
            relevance = relevance - beta * share(nw, pw)
        return relevance


def add_relprop(a: torch.Tensor, b: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance of the two operands of ``a + b``; shares use sums over the whole batch, as in the original."""
    s = safe_divide(R, a + b)
    ra, rb = a * s, b * s
    ra_sum, rb_sum, total = ra.sum(), rb.sum(), R.sum()
    ra_fact = safe_divide(ra_sum.abs(), ra_sum.abs() + rb_sum.abs()) * total
    rb_fact = safe_divide(rb_sum.abs(), ra_sum.abs() + rb_sum.abs()) * total
    return ra * safe_divide(ra_fact, ra_sum), rb * safe_divide(rb_fact, rb_sum)


def clone_relprop(x: torch.Tensor, *relevances: torch.Tensor) -> torch.Tensor:
    """Relevance of a tensor used len(relevances) times."""
    return x * sum(safe_divide(r, x) for r in relevances)


def matmul_relprop(a: torch.Tensor, b: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient x input relevance of both operands of ``a @ b`` (batched over leading dims)."""
    s = safe_divide(R, a @ b)
    return a * (s @ b.transpose(-1, -2)), b * (a.transpose(-1, -2) @ s)
