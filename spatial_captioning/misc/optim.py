"""Optimisers as the original builds them: plain torch optimisers, the Noam schedule, and ReduceLROnPlateau."""
from __future__ import annotations

import argparse
from typing import Iterable

import torch
from torch import optim


def set_lr(optimizer: optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def get_lr(optimizer: optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def clip_gradient(params: Iterable[torch.nn.Parameter], grad_clip: float) -> None:
    """Element-wise clamp of every gradient to +-grad_clip (not norm clipping), as the original."""
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(-grad_clip, grad_clip)


def build_optimizer(params, opt: argparse.Namespace) -> optim.Optimizer:
    kind = opt.optim
    if kind == "rmsprop":
        return optim.RMSprop(params, opt.learning_rate, opt.optim_alpha, opt.optim_epsilon, weight_decay=opt.weight_decay)
    if kind == "adagrad":
        return optim.Adagrad(params, opt.learning_rate, weight_decay=opt.weight_decay)
    if kind == "sgd":
        return optim.SGD(params, opt.learning_rate, weight_decay=opt.weight_decay)
    if kind == "sgdm":
        return optim.SGD(params, opt.learning_rate, opt.optim_alpha, weight_decay=opt.weight_decay)
    if kind == "sgdmom":
        return optim.SGD(params, opt.learning_rate, opt.optim_alpha, weight_decay=opt.weight_decay, nesterov=True)
    if kind == "adam":
        return optim.Adam(params, opt.learning_rate, (opt.optim_alpha, opt.optim_beta), opt.optim_epsilon,
                          weight_decay=opt.weight_decay)
    raise SystemExit(f"--optim {kind}: expected rmsprop, adagrad, sgd, sgdm, sgdmom or adam")


class NoamOpt:
    """lr(step) = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), set before every update."""

    def __init__(self, model_size: int, factor: float, warmup: int, optimizer: optim.Optimizer):
        self.optimizer = optimizer
        self._step = 0
        self.warmup = warmup
        self.factor = factor
        self.model_size = model_size
        self._rate = 0.0

    def rate(self, step: int | None = None) -> float:
        step = self._step if step is None else step
        return self.factor * (self.model_size ** -0.5 * min(step ** -0.5, step * self.warmup ** -1.5))

    def step(self) -> None:
        self._step += 1
        self._rate = self.rate()
        set_lr(self.optimizer, self._rate)
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def get_std_opt(model: torch.nn.Module, factor: float = 1, warmup: int = 2000) -> NoamOpt:
    """Adam(betas 0.9/0.98, eps 1e-9) under the Noam schedule; --learning_rate is ignored."""
    d_model = model.model.tgt_embed[0].d_model
    return NoamOpt(d_model, factor, warmup, optim.Adam(model.parameters(), lr=0, betas=(0.9, 0.98), eps=1e-9))


class ReduceLROnPlateau:
    """The optimiser plus a ReduceLROnPlateau scheduler stepped on validation (-CIDEr or loss)."""

    def __init__(self, optimizer: optim.Optimizer, factor: float = 0.5, patience: int = 3):
        self.optimizer = optimizer
        self.scheduler = optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min", factor=factor, patience=patience)
        self.current_lr = get_lr(optimizer)

    def step(self) -> None:
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def scheduler_step(self, value: float) -> None:
        self.scheduler.step(value)
        self.current_lr = get_lr(self.optimizer)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def state_dict(self) -> dict:
        return {"current_lr": self.current_lr, "scheduler_state_dict": self.scheduler.state_dict(),
                "optimizer_state_dict": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "current_lr" not in state:  # a plain optimiser's state: keep the lr from the options
            self.optimizer.load_state_dict(state)
            set_lr(self.optimizer, self.current_lr)
            return
        self.current_lr = state["current_lr"]
        self.scheduler.load_state_dict(state["scheduler_state_dict"])
        self.optimizer.load_state_dict(state["optimizer_state_dict"])


def build(model: torch.nn.Module, opt: argparse.Namespace):
    if opt.noamopt:
        return get_std_opt(model, factor=opt.noamopt_factor, warmup=opt.noamopt_warmup)
    if opt.reduce_on_plateau:
        return ReduceLROnPlateau(build_optimizer(model.parameters(), opt), factor=0.5, patience=3)
    return build_optimizer(model.parameters(), opt)
