"""The resumable training state (``<save-folder>/dmn_<dataset>_<split>_resume.pth``): what it holds, how it is written
and which one a run continues from.

A run restarted with the same command (by hand, or by ``torchrun --max-restarts``) continues from its own state; a
state written by another command is never overwritten silently.
"""
from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models.checkpoint import CheckpointError, load_failure_reason

REQUIRED_KEYS = ("model", "optimizer", "scheduler", "epoch", "next_batch", "best_val_loss")
# Flags that change neither what a run computes nor which files it writes: a restart may change them.
NOT_PART_OF_THE_RUN = frozenset({"workers", "num_workers", "log_interval", "pin_memory", "visdom", "visdom_port",
                                 "env"})


def state_file(save_folder: Path, dataset: str, split: str) -> Path:
    return save_folder / f"dmn_{dataset}_{split}_resume.pth"


def run_identity(args: argparse.Namespace) -> dict:
    """The flags that define a run; a state written under other flags belongs to another run."""
    return {key: value for key, value in sorted(vars(args).items()) if key not in NOT_PART_OF_THE_RUN}


def atomic_torch_save(obj: object, path: Path) -> None:
    """Write beside ``path``, flush to disk, then rename over it: a reader, or a run restarted after a crash at any
    moment, finds the previous complete file or the new one, never a partial one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_training_state(path: Path, expected: Path, flag: str) -> dict:
    """A training state file, checked up front; ``flag`` names where the path came from in the messages."""
    if not path.exists():
        raise CheckpointError(f"{flag} {path} does not exist: this run writes its state to {expected}; "
                              f"give that file, or drop {flag} to start over")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise CheckpointError(f"cannot read {flag} {path}: {load_failure_reason(err)}") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise CheckpointError(f"{flag} {path} is not a DMN training state (needs {', '.join(REQUIRED_KEYS)}): give "
                              f"the {expected.name} this script wrote, or use --snapshot for plain weights")
    return state


def describe_differences(theirs: dict, ours: dict, limit: int = 3) -> str:
    keys = sorted(key for key in set(theirs) | set(ours) if theirs.get(key, "unset") != ours.get(key, "unset"))
    parts = [f"--{key.replace('_', '-')} {theirs.get(key, 'unset')!r} there, {ours.get(key, 'unset')!r} here"
             for key in keys[:limit]]
    return "; ".join(parts) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass
class ResumePoint:
    path: Path
    state: dict
    restart: bool  # the same command's own state (so --eval-first has already run)


def select_resume_point(args: argparse.Namespace, own: Path, will_train: bool) -> ResumePoint | None:
    """The state this run continues from: its own state when the same command wrote it (a restart), else the
    ``--resume`` file, else none (a fresh start). Refuses to train over another run's state."""
    identity = run_identity(args)
    explicit = Path(args.resume) if args.resume is not None else None
    if will_train and own.exists():
        state = read_training_state(own, own, "--save-folder state")
        if state.get("run_args") == identity:
            return ResumePoint(own, state, restart=True)
        if explicit is None or explicit.resolve() != own.resolve():
            differences = (describe_differences(state["run_args"], identity) if isinstance(state.get("run_args"), dict)
                           else "written by an older version of this script")
            raise CheckpointError(
                f"--save-folder {own.parent} holds the training state of another run, {own} ({differences}): "
                f"continue that run with --resume {own}, choose another --save-folder, or delete the file to start "
                f"over")
        return ResumePoint(own, state, restart=False)
    if explicit is not None:
        return ResumePoint(explicit, read_training_state(explicit, own, "--resume"), restart=False)
    return None


def capture_rng_states() -> dict:
    """torch (CPU and every CUDA device), numpy and Python RNG states, in types ``weights_only`` loading accepts."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                      "has_gauss": has_gauss, "cached_gauss": cached_gauss},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy = states["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gauss"]))
    python = states["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))


def pending_gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    """Gradients accumulated since the last optimizer step (none right after a step)."""
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def restore_gradients(model: nn.Module, gradients: dict[str, torch.Tensor]) -> None:
    for name, parameter in model.named_parameters():
        if name in gradients:
            parameter.grad = gradients[name].to(parameter.device)
