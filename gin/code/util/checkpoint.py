"""Checkpoints in the original trainer's format, written atomically, loaded with or without the ``module.`` prefix."""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from errors import CheckpointError

PREFIX = "module."


def atomic_write_bytes(path: Path, write) -> None:
    """``write(file)`` into a temporary sibling, flushed to disk, then renamed over ``path``: a reader (or a run
    restarted after a crash) sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    with tmp.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def stale_temporaries(path: Path) -> list[Path]:
    """Temporary siblings of ``path`` left by a writer that was killed before its rename."""
    return sorted(path.parent.glob(glob.escape(f".{path.name}.tmp") + "*"))


def save_checkpoint(path: Path, model: nn.Module, **fields: Any) -> None:
    """Keys as the original trainer wrote them: model_state_dict (``module.``-prefixed, as under DataParallel),
    optimizer_state_dict, scheduler_state_dict, num_it, num_epoch, cfgtxt, best_met."""
    state = {PREFIX + k: v for k, v in model.state_dict().items()}
    atomic_write_bytes(path, lambda f: torch.save({"model_state_dict": state, **fields}, f))


def strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}


def read_checkpoint(path: Path, fix: str = "pass --resume_path=a models/UID.pth written by gin's main_dist.py or the "
                                          "released GIN/ZSGNet weights") -> dict[str, Any]:
    """The checkpoint dict at ``path``, checked to be a GIN/ZSGNet trainer checkpoint (has ``model_state_dict``);
    ``fix`` ends the message when it is not."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found (train first, pass --resume_path=..., or fetch the "
                              f"released weights with 'make gin-data')")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a foreign pickle can raise anything (missing modules, bad opcodes)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"checkpoint {path} could not be read ({type(exc).__name__}: {reason[:120]}); it is "
                              f"truncated or not a PyTorch checkpoint: {fix}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} has no 'model_state_dict' (not a ZSGNet/GIN trainer checkpoint): {fix}")
    return ckpt


def load_model_state(model: nn.Module, ckpt: dict[str, Any], path: Path, strict: bool = True) -> None:
    """Load ``ckpt['model_state_dict']`` (bare or ``module.`` keys) into ``model``; ``path`` names it in errors."""
    state = strip_prefix(ckpt["model_state_dict"])
    own = model.state_dict()
    bad = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"checkpoint {path} does not fit this model (check --arch/--cfg_file and the width keys): "
                              f"{bad[0]}" + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(f"checkpoint {path} does not match the model: missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]} (check --arch/--cfg_file, or --strict_load=False)")


def load_checkpoint(path: Path, model: nn.Module, strict: bool = True) -> dict[str, Any]:
    """Read the checkpoint at ``path`` into ``model``; returns the whole checkpoint dict."""
    ckpt = read_checkpoint(path)
    load_model_state(model, ckpt, path, strict)
    return ckpt
