"""Per-epoch checkpoints in the original's names, resuming from them, and refusing to overwrite them.

Each epoch writes ``pytorch_model.bin.<epoch>`` (the state dict) and then ``pytorch_opt.bin.<epoch>`` with the keys
the original's (commented-out) writer and its ``--resume_model`` reader use, ``epoch``, ``optimizer_state_dict`` and
``loss``, plus what a resumed run needs to continue exactly as the uninterrupted one: the step count, the model
selection so far, the per-epoch summary and the random states (training order, dropout, sampled captions)."""
from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from modules.build import CheckpointError, read_checkpoint
from util import save_atomic

logger = logging.getLogger(__name__)

MODEL_FILE = "pytorch_model.bin.{}"
OPTIMIZER_FILE = "pytorch_opt.bin.{}"
OPTIMIZER_KEYS = ("epoch", "optimizer_state_dict", "loss", "global_step", "selection", "epochs", "rng")


@dataclass
class TrainingState:
    """Where training stands after an epoch; a fresh run starts at epoch 0 with nothing selected."""

    next_epoch: int = 0
    global_step: int = 0
    selection: dict = field(default_factory=dict)  # best score, best checkpoint, epochs since the best
    epochs: list = field(default_factory=list)  # the per-epoch summary written to results.json


def check_outputs_free(output_dir: str, first_epoch: int, epochs: int, overwrite: bool) -> None:
    """Stop before training if a checkpoint this run would write is already there (an earlier run's)."""
    if overwrite:
        return
    for epoch in range(first_epoch, epochs):
        for name in (MODEL_FILE.format(epoch), OPTIMIZER_FILE.format(epoch)):
            path = os.path.join(output_dir, name)
            if os.path.exists(path):
                raise CheckpointError(
                    f"{path} already exists (an earlier run's checkpoint); pass a new --output_dir, continue that run "
                    f"with --resume_model {os.path.join(output_dir, OPTIMIZER_FILE.format('<last epoch>'))}, "
                    "or pass --overwrite to replace its checkpoints")


def prepare_output_dir(output_dir: str) -> None:
    """Create --output_dir and check that files can be written in it, before anything is loaded or trained."""
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"--output_dir {output_dir} cannot be created ({err.strerror}); pass a folder you can "
                              "write to") from err
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise CheckpointError(f"--output_dir {output_dir} is not writable; pass a folder you can write to")


def random_states(loader_generator: torch.Generator | None) -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "loader": loader_generator.get_state() if loader_generator is not None else None}


def restore_random_states(states: dict, loader_generator: torch.Generator | None) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if loader_generator is not None and states["loader"] is not None:
        loader_generator.set_state(states["loader"])


def save_epoch(output_dir: str, epoch: int, optimizer: torch.optim.Optimizer, loss: float, state: TrainingState,
               loader_generator: torch.Generator | None) -> str:
    """Write ``pytorch_opt.bin.<epoch>`` (atomically) after the epoch's model file and its evaluation."""
    path = os.path.join(output_dir, OPTIMIZER_FILE.format(epoch))
    save_atomic({"epoch": epoch, "optimizer_state_dict": optimizer.state_dict(), "loss": loss,
                 "global_step": state.global_step, "selection": state.selection, "epochs": state.epochs,
                 "rng": random_states(loader_generator)}, path)
    logger.info("Optimizer saved to %s", path)
    return path


def load_resume(path: str) -> dict:
    """The ``--resume_model`` file, checked: it must be a ``pytorch_opt.bin.<epoch>`` this code wrote."""
    fix = "pass the pytorch_opt.bin.<epoch> of the run to continue"
    checkpoint = read_checkpoint(path, "--resume_model", "checkpoint", fix, missing_hint=f" ({fix})")
    missing = [k for k in OPTIMIZER_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise CheckpointError(f"--resume_model {path} lacks {', '.join(missing)}: not a pytorch_opt.bin.<epoch> "
                              "written by this code; pass one (the model weights go to --init_model)")
    return checkpoint


def first_epoch(checkpoint: dict | None) -> int:
    return 0 if checkpoint is None else checkpoint["epoch"] + 1


def resume(path: str, checkpoint: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           loader_generator: torch.Generator | None) -> TrainingState:
    """Model weights from the ``pytorch_model.bin.<epoch>`` beside ``path``, optimizer and random states from
    ``checkpoint`` (``path`` loaded): the run continues at the next epoch as if it had not stopped."""
    epoch = checkpoint["epoch"]
    model_path = os.path.join(os.path.dirname(path), MODEL_FILE.format(epoch))
    if not os.path.isfile(model_path):
        raise CheckpointError(f"{model_path} not found: --resume_model {path} needs the model file of its epoch "
                              "beside it")
    weights = torch.load(model_path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    except (RuntimeError, ValueError, KeyError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"--resume_model {path} does not fit this model ({reason}); resume "
                              "with the flags of the run that wrote it") from err
    restore_random_states(checkpoint["rng"], loader_generator)
    logger.info("Resumed from %s and %s: epoch %d done, continuing at epoch %d", model_path, path, epoch, epoch + 1)
    return TrainingState(next_epoch=epoch + 1, global_step=checkpoint["global_step"],
                         selection=checkpoint["selection"], epochs=checkpoint["epochs"])


def last_checkpoint(output_dir: str) -> str:
    """The ``pytorch_model.bin.<epoch>`` of the highest epoch in ``output_dir`` (what stage 2 starts from)."""
    epochs = [int(name.rsplit(".", 1)[1]) for name in os.listdir(output_dir)
              if name.startswith("pytorch_model.bin.") and name.rsplit(".", 1)[1].isdigit()]
    if not epochs:
        raise CheckpointError(f"no pytorch_model.bin.<epoch> in {output_dir}: run stage 1 (main_task_retrieval.py "
                              "--do_train) into it first")
    return os.path.join(output_dir, MODEL_FILE.format(max(epochs)))


if __name__ == "__main__":
    try:
        print(last_checkpoint(sys.argv[1]))
    except (CheckpointError, OSError, IndexError) as err:
        sys.exit(f"clip4idc: error: {err} (usage: python checkpoints.py <stage-1 output_dir>)")
