"""Loading DMN weights: released checkpoints (old-SRU keys), sru 2.x checkpoints and DPN ImageNet weights."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from .dpn import PRETRAINED_FILES, PRETRAINED_URL, DPN
from .sru import fill_new_sru_keys

logger = logging.getLogger(__name__)

EMBEDDING_KEY = "langvis.emb.weight"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message names the file, key and fix."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a plain or wrapped (``{'model': ...}``/``{'state_dict': ...}``) checkpoint file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise CheckpointError(f"cannot read checkpoint {path}: {load_failure_reason(err)}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_failure_reason(err: Exception) -> str:
    """torch.load's several-line message in one line: the class a foreign pickle needs, else its first sentence."""
    foreign = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    if foreign:
        return (f"it holds a {foreign.group(1)} object, which no DMN checkpoint does (a file of another project?); "
                f"use a DMN weights file (dmn_<dataset>_weights.pth or one this train.py wrote)")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{first.split('. ')[0]}; the file is damaged or not a torch checkpoint: copy or write it again"


def load_dmn_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load DMN weights as the original did, with the silent failures turned into errors.

    - sru 2.x ``weight_c``/``scale_x`` entries are checked and dropped (they hold fixed old-SRU values here);
    - low-res weights into a high-res model: ``output_collapse`` is dropped, the upsampling module keeps its
      initialisation (the README's high-res fine-tuning recipe);
    - any other shape mismatch, in particular an embedding of another vocabulary size, is an error (the original
      silently left such tensors random).
    """
    state_dict = fill_new_sru_keys(state_dict)
    own = model.state_dict()
    if EMBEDDING_KEY in state_dict and EMBEDDING_KEY in own and state_dict[EMBEDDING_KEY].shape != own[EMBEDDING_KEY].shape:
        raise CheckpointError(
            f"{source}: vocabulary size mismatch: checkpoint embedding has {state_dict[EMBEDDING_KEY].shape[0]} words, "
            f"this dataset's corpus has {own[EMBEDDING_KEY].shape[0]}; use the checkpoint of the same --dataset"
        )
    for key, value in state_dict.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(own[key].shape)}; check the model flags (--num-filters, --mix-we, ...)")
    unexpected = [k for k in state_dict if k not in own]
    if any(not k.startswith("langvis.output_collapse.") for k in unexpected):
        raise CheckpointError(f"{source}: keys the model does not have, e.g. {unexpected[0]}; check the model flags")
    # PyTorch <= 0.4.0 (the era of the released weights) wrote no BatchNorm num_batches_tracked; the counter only
    # matters for momentum=None, so the model's own value stays, as load_state_dict(strict=True) allows.
    missing = [k for k in own if k not in state_dict and not k.endswith(".num_batches_tracked")]
    if any(not k.startswith("upsample.") for k in missing):
        first = next(k for k in missing if not k.startswith("upsample."))
        raise CheckpointError(f"{source}: missing key {first}; is this a DMN checkpoint of the same --backend?")
    if missing:
        logger.info("%s: low-res weights; the upsampling module starts from its initialisation", source)
    model.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)


def pretrained_dpn_path(backend: str, data_root: Path) -> Path | None:
    """Where ``make dmn-data`` puts the ImageNet weights, or torch hub's cache; None when neither has them."""
    name = PRETRAINED_FILES.get(backend)
    if name is None:
        return None
    for candidate in (Path(data_root) / "weights" / name, Path(torch.hub.get_dir()) / "checkpoints" / name):
        if candidate.exists():
            return candidate
    return None


def load_pretrained_dpn(dpn: DPN, backend: str, data_root: Path, replaced_by: str | None = None) -> bool:
    """Load ImageNet weights into the DPN trunk; False when the file is absent, with one loud warning unless a
    checkpoint (``replaced_by``) will overwrite the trunk anyway."""
    path = pretrained_dpn_path(backend, data_root)
    if path is None:
        name = PRETRAINED_FILES.get(backend, f"{backend} weights")
        if replaced_by is not None:
            logger.info("DPN ImageNet weights %s not found; not needed: %s holds the visual module", name, replaced_by)
            return False
        logger.warning("*** DPN ImageNet weights %s not found in %s/weights/ (run 'make dmn-data' or fetch %s%s); "
                       "the visual module starts from RANDOM initialisation ***",
                       name, data_root, PRETRAINED_URL, name)
        return False
    state = read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    own = dpn.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{path}: missing key {missing[0]}; is it the {backend} ImageNet checkpoint?")
    dpn.load_state_dict(state, strict=False)
    logger.info("Loaded DPN ImageNet weights from %s", path)
    return True
