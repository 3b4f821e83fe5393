"""Training and evaluation loops of DIFNet: cross-entropy, SCST, validation loss and beam-search metrics."""
from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.text import decode, merge_repeats
from data.vocab import Vocab
from distributed import DistInfo, average_gradients, token_share
from models import CaptioningModel, beam_search
from shared_eval.captions import CiderD, evaluate, tokenize

logger = logging.getLogger("difnet")

BEAM_SIZE = 5
MAX_LEN = 20  # generated words, also for SCST


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked (the original trains in float32)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def skip_empty(loader: Iterable):
    """The loader's batches, less those whose samples were all skipped as corrupt (--skip_corrupt)."""
    return (batch for batch in loader if batch is not None)


def _progress(desc: str, total: int, enabled: bool):
    return tqdm(desc=desc, unit="it", total=total, disable=not enabled, leave=False)


def train_xe(model: CaptioningModel, loader: DataLoader, optim: torch.optim.Optimizer, loss_fn: nn.Module,
             device: torch.device, epoch: int, info: DistInfo, *, smoke: bool = False, bf16: bool = False) -> float:
    """One epoch of teacher-forced cross-entropy; returns the mean batch loss."""
    model.train()
    running_loss, n = 0.0, 0
    with _progress(f"Epoch {epoch} - train", len(loader), info.is_main) as pbar:
        for batch in skip_empty(loader):
            grid, captions, seg = batch
            grid, captions = grid.to(device), captions.to(device)
            seg = seg.to(device) if seg is not None else None
            with autocast(device, bf16):
                out = model(grid, captions, seg)
            optim.zero_grad()
            target = captions[:, 1:].reshape(-1)
            loss = loss_fn(out[:, :-1].float().reshape(-1, out.shape[-1]), target)
            (loss * token_share((target != loss_fn.ignore_index).sum(), info)).backward()
            average_gradients(model, info)
            optim.step()
            running_loss += loss.item()
            n += 1
            pbar.set_postfix(loss=running_loss / n)
            pbar.update()
            if smoke:
                break
    return running_loss / max(n, 1)


def scst_rewards(scorer: CiderD, candidates: list[str], refs: list[list[str]], beam_size: int) -> np.ndarray:
    """CIDEr-D of each candidate (b * beam_size of them) against its image's PTB-tokenized references."""
    flat_refs = tokenize(list(itertools.chain.from_iterable(refs)))
    bounds = list(itertools.accumulate(len(r) for r in refs))
    tok_refs = [flat_refs[end - len(r): end] for r, end in zip(refs, bounds)]
    per_candidate_refs = list(itertools.chain.from_iterable([r] * beam_size for r in tok_refs))
    return scorer.score(tokenize(candidates), per_candidate_refs)


def train_scst(model: CaptioningModel, loader: DataLoader, optim: torch.optim.Optimizer, scorer: CiderD,
               vocab: Vocab, device: torch.device, epoch: int, info: DistInfo, *, smoke: bool = False,
               bf16: bool = False, cache: bool = True) -> tuple[float, float, float]:
    """One epoch of self-critical training: reward CIDEr-D of the 5 beams, baseline their mean.

    Returns the mean loss, reward and baseline over batches.
    """
    model.train()
    running_loss = running_reward = running_baseline = 0.0
    n = 0
    eos = vocab.stoi["<eos>"]
    with _progress(f"Epoch {epoch} - train", len(loader), info.is_main) as pbar:
        for batch in skip_empty(loader):
            grid = batch.grid.to(device)
            seg = batch.seg.to(device) if batch.seg is not None else None
            with autocast(device, bf16):
                outs, log_probs = beam_search(model, grid, seg, MAX_LEN, eos, BEAM_SIZE, out_size=BEAM_SIZE,
                                              cache=cache)
            optim.zero_grad()
            caps_gen = decode(outs.view(-1, MAX_LEN), vocab)  # the original scores them without merging repeats
            reward = scst_rewards(scorer, caps_gen, batch.refs, BEAM_SIZE).astype(np.float32)
            reward = torch.from_numpy(reward).to(device).view(grid.shape[0], BEAM_SIZE)
            reward_baseline = reward.mean(-1, keepdim=True)
            loss = (-log_probs.float().mean(-1) * (reward - reward_baseline)).mean()
            loss.backward()
            average_gradients(model, info)
            optim.step()
            running_loss += loss.item()
            running_reward += reward.mean().item()
            running_baseline += reward_baseline.mean().item()
            n += 1
            pbar.set_postfix(loss=running_loss / n, reward=running_reward / n, reward_baseline=running_baseline / n)
            pbar.update()
            if smoke:
                break
    n = max(n, 1)
    return running_loss / n, running_reward / n, running_baseline / n


@torch.no_grad()
def evaluate_loss(model: CaptioningModel, loader: DataLoader, loss_fn: nn.Module, device: torch.device, epoch: int,
                  *, smoke: bool = False, progress: bool = True) -> float:
    """Teacher-forced validation loss (mean over batches)."""
    model.eval()
    running_loss, n = 0.0, 0
    with _progress(f"Epoch {epoch} - validation", len(loader), progress) as pbar:
        for batch in skip_empty(loader):
            grid, captions, seg = batch
            grid, captions = grid.to(device), captions.to(device)
            seg = seg.to(device) if seg is not None else None
            out = model(grid, captions, seg)
            running_loss += loss_fn(out[:, :-1].reshape(-1, out.shape[-1]), captions[:, 1:].reshape(-1)).item()
            n += 1
            pbar.update()
            if smoke:
                break
    return running_loss / max(n, 1)


@torch.no_grad()
def generate_captions(model: CaptioningModel, loader: DataLoader, vocab: Vocab, device: torch.device,
                      desc: str = "evaluation", *, smoke: bool = False,
                      progress: bool = True, cache: bool = True) -> list[tuple[int, str, list[str]]]:
    """(image_id, generated caption, reference captions) per image: beam 5, 20 words, repeats merged."""
    model.eval()
    eos = vocab.stoi["<eos>"]
    results = []
    with _progress(desc, len(loader), progress) as pbar:
        for batch in skip_empty(loader):
            seg = batch.seg.to(device) if batch.seg is not None else None
            out, _ = beam_search(model, batch.grid.to(device), seg, MAX_LEN, eos, BEAM_SIZE, out_size=1, cache=cache)
            for image_id, words, refs in zip(batch.image_ids.tolist(), decode(out, vocab, join_words=False),
                                             batch.refs):
                results.append((image_id, merge_repeats(words), refs))
            pbar.update()
            if smoke:
                break
    return results


def score_captions(results: list[tuple[int, str, list[str]]], *, meteor: bool = True) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D (document frequencies from these references), via shared_eval."""
    gts = {str(i): refs for i, (_, _, refs) in enumerate(results)}
    res = {str(i): [gen] for i, (_, gen, _) in enumerate(results)}
    return evaluate(gts, res, meteor=meteor)


def original_format(scores: dict[str, float]) -> dict:
    """The dict the original prints: {'BLEU': [b1..b4], 'METEOR': m, 'ROUGE': r, 'CIDEr': c}."""
    out = {"BLEU": [scores[f"Bleu_{i}"] for i in range(1, 5)]}
    if "METEOR" in scores:
        out["METEOR"] = scores["METEOR"]
    out["ROUGE"] = scores["ROUGE_L"]
    out["CIDEr"] = scores["CIDEr"]
    return out
