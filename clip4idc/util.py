"""Logging, distributed set-up from the launcher's environment, seeding, precision and atomic writes."""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import logging.handlers
import os
import random
import sys
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


FORMAT = logging.Formatter("%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S")


def get_logger() -> logging.Logger:
    """Root logger to stderr; records are also kept until ``log_to_file`` writes them to the run's log.txt."""
    logger = logging.getLogger()
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(FORMAT)
    logger.addHandler(stream)
    logger.addHandler(logging.handlers.MemoryHandler(capacity=1 << 20, flushLevel=logging.CRITICAL + 1))
    return logger


def log_to_file(filename: str) -> None:
    """Append the kept records and everything after to ``filename`` (the original's log.txt). Called once the inputs
    are checked, so that a run stopped by bad input leaves an earlier run's log.txt untouched."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.MemoryHandler):
            file_handler = logging.FileHandler(filename)
            file_handler.setFormatter(FORMAT)
            handler.setTarget(file_handler)
            handler.flush()
            root.removeHandler(handler)
            root.addHandler(file_handler)


def init_distributed_mode(args) -> torch.device:
    """One process unless a launcher set WORLD_SIZE > 1; then NCCL on CUDA, gloo on CPU (never at import time)."""
    args.world_size = int(os.environ.get("WORLD_SIZE", 1))
    args.rank = int(os.environ.get("RANK", 0))
    args.local_rank = int(os.environ.get("LOCAL_RANK", args.local_rank if args.world_size > 1 else 0))
    cuda = torch.cuda.is_available()
    if args.world_size > 1:
        if cuda:
            torch.cuda.set_device(args.local_rank)
        store = elastic_attempt_store(args.world_size)
        if store is None:
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        else:
            dist.init_process_group(backend="nccl" if cuda else "gloo", store=store, rank=args.rank,
                                    world_size=args.world_size)
    args.n_gpu = 1 if cuda else 0
    return torch.device("cuda", args.local_rank) if cuda else torch.device("cpu")


def elastic_attempt_store(world_size: int) -> dist.Store | None:
    """Under torchrun's agent store (c10d rendezvous), the store seen through a prefix naming the restart: the agent
    keeps one store across restarts, and the keys a killed attempt left there (gloo addresses, barrier counts) were
    read by the restarted workers (seen here: a restarted gloo group failing with "connection refused")."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True):
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False,
                          timeout=datetime.timedelta(minutes=30))
    return dist.PrefixStore(f"clip4idc/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def is_main_process(args) -> bool:
    return args.rank == 0


def set_seed(seed: int) -> None:
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto -> fp16 on CUDA (the original stores CLIP weights in fp16), fp32 on CPU."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise SystemExit("--precision fp16 needs CUDA (fp16 matmuls on CPU are slow and untested); use fp32 or bf16")
    return precision


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_atomic(obj: Any, path: str) -> None:
    """torch.save (or json for dicts/lists with ``.json`` paths) to ``path`` via a temporary file and os.replace;
    replacing an existing file is logged (the scripts refuse to replace checkpoints before they start)."""
    if os.path.exists(path):
        logger.warning("replacing %s", path)
    tmp = f"{path}.tmp{os.getpid()}"
    if path.endswith(".json"):
        with open(tmp, "w") as f:
            json.dump(obj, f)
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


def compile_in_place(model: torch.nn.Module) -> None:
    """torch.compile the vision tower and the decoder (if any) where they are, so state_dict keys stay the
    released checkpoints'."""
    model.clip.visual.compile()
    if getattr(model, "decoder", None) is not None:
        model.decoder.compile()


def wrap_ddp(model: torch.nn.Module, args) -> torch.nn.Module:
    """DistributedDataParallel when launched with several processes (stage 2 leaves the text tower unused)."""
    if args.world_size <= 1:
        return model
    device_ids = [args.local_rank] if torch.cuda.is_available() else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
