"""Per-epoch checkpoints in the original's names, resuming from them, and refusing to overwrite them.

Each epoch writes ``pytorch_model.bin.<epoch>`` (the state dict) and then ``pytorch_opt.bin.<epoch>`` with the keys
the original's (commented-out) writer and its ``--resume_model`` reader use, ``epoch``, ``optimizer_state_dict`` and
``loss``, plus what a resumed run needs to continue exactly as the uninterrupted one: the step count, the model
selection so far, the per-epoch summary and the random states (training order, dropout, sampled captions). The model
file is written first, the optimizer file last, each atomically: a ``pytorch_opt.bin.<epoch>`` marks a finished epoch.

A restarted run (torchrun's ``--max-restarts``, or ``--auto_resume``) continues from the last finished epoch in its
``--output_dir`` when its flags equal those the checkpoint records."""
from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from modules.build import CheckpointError, read_checkpoint
from util import save_atomic

logger = logging.getLogger(__name__)

MODEL_FILE = "pytorch_model.bin.{}"
OPTIMIZER_FILE = "pytorch_opt.bin.{}"
OPTIMIZER_KEYS = ("epoch", "optimizer_state_dict", "loss", "global_step", "selection", "epochs", "rng")
# Flags that may differ between a run and its restart: who runs where, where the run folder now lies, how often it
# logs, how it reads and evaluates.
RUNTIME_FLAGS = ("world_size", "rank", "local_rank", "n_gpu", "output_dir", "resume_model", "auto_resume", "overwrite",
                 "n_display", "num_thread_reader", "batch_size_val")


@dataclass
class TrainingState:
    """Where training stands after an epoch; a fresh run starts at epoch 0 with nothing selected."""

    next_epoch: int = 0
    global_step: int = 0
    selection: dict = field(default_factory=dict)  # best score, best checkpoint, epochs since the best
    epochs: list = field(default_factory=list)  # the per-epoch summary written to results.json


def check_outputs_free(output_dir: str, first_epoch: int, epochs: int, overwrite: bool,
                       restarted: bool = False) -> None:
    """Stop before training if a checkpoint this run would write is already there (an earlier run's). A restarted run
    may replace the model file of the epoch its previous attempt was cut off in (written before that epoch's optimizer
    file, so unfinished); it says so."""
    if overwrite:
        return
    for epoch in range(first_epoch, epochs):
        for name in (MODEL_FILE.format(epoch), OPTIMIZER_FILE.format(epoch)):
            path = os.path.join(output_dir, name)
            if restarted and epoch == first_epoch and name == MODEL_FILE.format(epoch) and os.path.exists(path):
                logger.warning("%s is from the epoch the previous attempt did not finish; it will be replaced", path)
                continue
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


def gather_random_states(loader_generator: torch.Generator | None, world_size: int) -> list[dict] | None:
    """Every rank's random states at the end of its training epoch, on every rank (None on one process). Taken before
    rank 0 evaluates: its evaluation draws from the same generators (sampled captions, loader seeds), the others'
    states are already those they start the next epoch with."""
    if world_size <= 1:
        return None
    states: list = [None] * world_size
    dist.all_gather_object(states, random_states(loader_generator))
    return states


def restore_random_states(states: dict, loader_generator: torch.Generator | None) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if loader_generator is not None and states["loader"] is not None:
        loader_generator.set_state(states["loader"])


def training_flags(args) -> dict:
    """The flags that decide what a run computes (a restart must repeat them)."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in RUNTIME_FLAGS}


def save_epoch(output_dir: str, epoch: int, optimizer: torch.optim.Optimizer, loss: float, state: TrainingState,
               loader_generator: torch.Generator | None, args, rank_states: list[dict] | None = None) -> str:
    """Write ``pytorch_opt.bin.<epoch>`` (atomically) after the epoch's model file and its evaluation: ``rng`` holds
    rank 0's random states now, ``rng_ranks`` those of every rank from ``gather_random_states``."""
    path = os.path.join(output_dir, OPTIMIZER_FILE.format(epoch))
    save_atomic({"epoch": epoch, "optimizer_state_dict": optimizer.state_dict(), "loss": loss,
                 "global_step": state.global_step, "selection": state.selection, "epochs": state.epochs,
                 "rng": random_states(loader_generator), "rng_ranks": rank_states or [],
                 "args": training_flags(args)}, path)
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


def restarted(args) -> bool:
    """A restart of the same command: torchrun's elastic agent counts its restarts; ``--auto_resume`` asks for it."""
    return args.auto_resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def last_finished_state(output_dir: str) -> str | None:
    """The ``pytorch_opt.bin.<epoch>`` of the highest epoch in ``output_dir`` whose model file is there too."""
    if not os.path.isdir(output_dir):
        return None
    epochs = [int(name.rsplit(".", 1)[1]) for name in os.listdir(output_dir)
              if name.startswith("pytorch_opt.bin.") and name.rsplit(".", 1)[1].isdigit()]
    finished = [e for e in epochs if os.path.isfile(os.path.join(output_dir, MODEL_FILE.format(e)))]
    return os.path.join(output_dir, OPTIMIZER_FILE.format(max(finished))) if finished else None


def resume_state(args) -> tuple[str | None, dict | None]:
    """(path, contents) of the optimizer file to continue from: ``--resume_model``, or on a restart the last finished
    epoch in ``--output_dir`` (checked to come from the same flags); (None, None) for a fresh run."""
    if args.resume_model:
        return args.resume_model, load_resume(args.resume_model)
    if not restarted(args):
        return None, None
    path = last_finished_state(args.output_dir)
    if path is None:
        logger.info("restart: no finished epoch in %s yet, starting from the beginning", args.output_dir)
        return None, None
    checkpoint = load_resume(path)
    recorded, current = checkpoint.get("args", {}), training_flags(args)
    changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    if changed:
        raise CheckpointError(f"{path} was written with other flags ({', '.join('--' + k for k in changed)}): a "
                              "restart continues only the same command; pass --resume_model to continue it with new "
                              "flags, or a new --output_dir")
    return path, checkpoint


def first_epoch(checkpoint: dict | None) -> int:
    return 0 if checkpoint is None else checkpoint["epoch"] + 1


def resume(path: str, checkpoint: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           loader_generator: torch.Generator | None, rank: int = 0) -> TrainingState:
    """Model weights from the ``pytorch_model.bin.<epoch>`` beside ``path``, optimizer and this rank's random states
    from ``checkpoint`` (``path`` loaded): the run continues at the next epoch as if it had not stopped."""
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
    rank_states = checkpoint.get("rng_ranks") or []
    restore_random_states(rank_states[rank] if 0 < rank < len(rank_states) else checkpoint["rng"], loader_generator)
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
