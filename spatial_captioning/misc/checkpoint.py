"""Checkpoint files under --checkpoint_path, written atomically (tmp file + os.replace).

Names follow the README's eval commands: model.pth, optimizer.pth, infos_<id>.pkl, histories_<id>.pkl, and the
best copies model-best.pth / infos_<id>-best.pkl. Resuming also accepts the code's own names (model.pt,
infos.pkl) and, after scripts/copy_model.sh, a single infos_*.pkl.
"""
from __future__ import annotations

import glob
import os
import pickle
import tempfile
from typing import Any

import torch


class CheckpointError(Exception):
    pass


def _atomic(path: str, write) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def ensure_writable_dir(path: str, why: str) -> None:
    """Create ``path`` and write a probe file into it (permission bits alone do not tell, e.g. for root)."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise CheckpointError(f"cannot write to {path} ({err.strerror}; {why}): pick a folder you can write "
                              "to") from None


def save_torch(obj: Any, path: str) -> None:
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def save_pickle(obj: Any, path: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, pickle.HIGHEST_PROTOCOL)
    _atomic(path, write)


def load_pickle(path: str) -> Any:
    """A pickle written by train.py; anything else (a .pth, a truncated file) is a CheckpointError naming it."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError,
            ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a pickle written by train.py ({type(err).__name__}): pass the "
                              "infos_<id>.pkl / histories_<id>.pkl of a training run") from None


def load_torch(path: str, device: torch.device) -> Any:
    """A file train.py wrote with torch.save (it holds the options and RNG states, hence weights_only=False)."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError, AttributeError, ImportError) as err:
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}): it is not a file written by "
                              "train.py; remove it or pass --auto_resume 0") from None


def find_infos(directory: str, run_id: str) -> str:
    for name in (f"infos_{run_id}.pkl", "infos.pkl"):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    found = [p for p in glob.glob(os.path.join(directory, "infos_*.pkl")) if not p.endswith("-best.pkl")]
    if len(found) == 1:
        return found[0]
    raise CheckpointError(f"--start_from {directory}: no infos_{run_id}.pkl there "
                          f"({'several infos_*.pkl' if found else 'no infos file'}); pass the directory of a run")


def find_model(directory: str) -> str:
    for name in ("model.pth", "model.pt"):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise CheckpointError(f"--start_from {directory}: no model.pth in it")


def load_state_dict(model: torch.nn.Module, path: str, device: torch.device) -> None:
    if not os.path.isfile(path):
        raise CheckpointError(f"--model {path} not found")
    state = torch.load(path, map_location=device)
    if isinstance(state, dict) and "model" in state and not any(k.startswith("att_embed") for k in state):
        state = state["model"]
    mine = model.state_dict()
    missing = [k for k in mine if k not in state]
    unexpected = [k for k in state if k not in mine]
    wrong = [k for k in mine if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"shape mismatch at {wrong[0]}: {tuple(state[wrong[0]].shape)} in file vs "
                       f"{tuple(mine[wrong[0]].shape)} here")
        raise CheckpointError(f"{path} does not fit the model built from the options/infos ({detail}); "
                              "check --num_layers/--input_encoding_size/--ff_size/--use_grid/--num_grids and the vocabulary")
    model.load_state_dict(state)
