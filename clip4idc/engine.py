"""train_one_epoch, the optimizer groups of both stages, retrieval and caption evaluation."""
from __future__ import annotations

import logging
import math
import time

import torch
from torch import nn
from tqdm import tqdm

from metrics import compute_metrics, group_similarity, pair_to_text_sim, text_to_pair_metrics
from modules.modeling import CLIP4IDC
from modules.optimization import BertAdam
from modules.tokenization_clip import EOT, SOT, ClipTokenizer
from util import autocast

logger = logging.getLogger(__name__)

NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")  # CLIP's ln_*.weight therefore is decayed


PAIR_PARAMS = ("clip.visual.ln_mid", "clip.visual.joint_positional_embedding", "clip.visual.bef_embedding",
               "clip.visual.aft_embedding")


def in_clip_group(name: str, task_type: str) -> bool:
    """Parameters trained at lr·coef_lr: every clip.* one, except (stage 1 only) the four new pair parameters."""
    if task_type == "retrieval":
        return "clip." in name and not any(p in name for p in PAIR_PARAMS)
    return "clip." in name


def prep_optimizer(model: CLIP4IDC, task_type: str, lr: float, coef_lr: float, warmup: float,
                   t_total: float, weight_decay: float | None = None) -> BertAdam:
    """Stage 1: warmup_cosine, betas (0.9, 0.98), decay 0.2; stage 2: warmup_linear, betas (0.9, 0.999), decay 0.01.
    Groups in the original's order: decay/clip, decay/rest, no-decay/clip, no-decay/rest. ``weight_decay`` None keeps
    the original's hard-coded value of the stage."""
    if task_type == "retrieval":
        default_decay, schedule, b2 = 0.2, "warmup_cosine", 0.98
    else:
        default_decay, schedule, b2 = 0.01, "warmup_linear", 0.999
    weight_decay = default_decay if weight_decay is None else weight_decay
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = []
    for decay in (True, False):
        for clip_part in (True, False):
            params = [p for n, p in named
                      if (not any(nd in n for nd in NO_DECAY)) == decay and in_clip_group(n, task_type) == clip_part]
            group = {"params": params, "weight_decay": weight_decay if decay else 0.0}
            if clip_part:
                group["lr"] = lr * coef_lr
            groups.append(group)
    return BertAdam(groups, lr=lr, warmup=warmup, schedule=schedule, b1=0.9, b2=b2, e=1e-6, t_total=t_total,
                    weight_decay=weight_decay, max_grad_norm=1.0)


def unwrap(model: nn.Module) -> CLIP4IDC:
    return model.module if hasattr(model, "module") else model


def batch_loss(model: nn.Module, batch: list, task_type: str, datatype: str,
               no_change_weight: float = 1.0) -> torch.Tensor:
    if task_type == "retrieval":
        input_ids, _mask, _seg, bef, aft, _pair_mask = batch
        return model(input_ids, bef, aft)
    if datatype == "clevr":
        input_ids, _m, _s, bef, aft, nsc, _pm, in_cap, dec_mask, out_cap, nc_in, nc_mask, nc_out = batch
        # CLEVR: change caption of (before, semantic) plus no-change caption of (before, distractor).
        change = model(input_ids, bef, aft, in_cap, dec_mask, out_cap)
        return change + no_change_weight * model(input_ids, bef, nsc, nc_in, nc_mask, nc_out)
    input_ids, _m, _s, bef, aft, _pm, in_cap, dec_mask, out_cap = batch
    return model(input_ids, bef, aft, in_cap, dec_mask, out_cap)


def train_one_epoch(model: nn.Module, loader, optimizer: BertAdam, device: torch.device, args, epoch: int,
                    global_step: int) -> tuple[float, int]:
    model.train()
    start, total = time.time(), 0.0
    optimizer.zero_grad()
    for step, batch in enumerate(loader):
        if args.task_type == "caption":
            batch = batch[:-1]  # drop the pair names
        batch = [t.to(device, non_blocking=True) for t in batch]
        with autocast(args.precision, device):
            loss = batch_loss(model, batch, args.task_type, args.datatype, getattr(args, "no_change_weight", 1.0))
        if args.gradient_accumulation_steps > 1:
            loss = loss / args.gradient_accumulation_steps
        loss.backward()
        total += loss.item()
        if (step + 1) % args.gradient_accumulation_steps == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            with torch.no_grad():  # openai/CLIP#46: keep the temperature at most 100
                unwrap(model).clip.logit_scale.clamp_(max=math.log(100))
            global_step += 1
            if global_step % args.n_display == 0 and args.rank == 0:
                lrs = "-".join(f"{lr:.9f}" for lr in sorted(set(optimizer.get_lr())))
                logger.info("Epoch: %d/%s, Step: %d/%d, Lr: %s, Loss: %f, Time/step: %f", epoch + 1, args.epochs,
                            step + 1, len(loader), lrs, loss.item(),
                            (time.time() - start) / (args.n_display * args.gradient_accumulation_steps))
                start = time.time()
    return total / max(1, len(loader)), global_step


@torch.no_grad()
def eval_retrieval(model: CLIP4IDC, loader, device: torch.device, precision: str) -> dict[str, dict[str, float]]:
    """Text->pair and pair->text metrics; pair features are taken at each pair's last sentence."""
    model.eval()
    dataset = loader.dataset
    last_rows = {p - 1 for p in dataset.cut_off_points}
    texts, pairs, row = [], [], 0
    for batch in tqdm(loader, desc="retrieval eval", leave=False, disable=None):
        input_ids, _mask, _seg, bef, aft, _pm = [t.to(device) for t in batch]
        keep = [i for i in range(input_ids.size(0)) if row + i in last_rows]
        with autocast(precision, device):
            texts.append(model.get_sequence_output(input_ids)[0].float().cpu())
            if keep:
                pairs.append(model.get_visual_output(bef[keep], aft[keep])[0].float().cpu())
        row += input_ids.size(0)
    sim = model.get_similarity_logits(torch.cat(texts), torch.cat(pairs)).numpy()
    grouped = group_similarity(sim, list(dataset.cut_off_points))
    return {"text_to_pair": text_to_pair_metrics(grouped), "pair_to_text": compute_metrics(pair_to_text_sim(grouped))}


def decode_caption(tokenizer: ClipTokenizer, ids: list[int]) -> str:
    """BPE-decode and cut at end-of-text and at the first "!" (the padding id 0), as the original."""
    text = tokenizer.decode(ids)
    if EOT in text:
        text = text[: text.index(EOT)]
    if "!" in text:
        text = text[: text.index("!")]
    return text.strip()


@torch.no_grad()
def generate_captions(model: CLIP4IDC, loader, tokenizer: ClipTokenizer, device: torch.device, precision: str,
                      steps: int, datatype: str, use_cache: bool = True) -> list[dict]:
    """Greedy captions ``[{"caption", "image_id"}]``; for CLEVR also the distractor pairs as ``"<id>_n"``.
    ``use_cache=False``: the original's decoding, the whole prefix again at every step (same captions, slower)."""
    model.eval()
    sot = tokenizer.encoder[SOT]
    results, nc_results = [], []
    for batch in tqdm(loader, desc="caption eval", leave=False, disable=None):
        names = batch[-1]
        tensors = [t.to(device) for t in batch[:-1]]
        bef, aft = tensors[3], tensors[4]
        with autocast(precision, device):
            ids = model.greedy_decode(bef, aft, sot, steps, use_cache).tolist()
            nc_ids = (model.greedy_decode(bef, tensors[5], sot, steps, use_cache).tolist() if datatype == "clevr"
                      else None)
        results += [{"caption": decode_caption(tokenizer, i), "image_id": n} for n, i in zip(names, ids)]
        if nc_ids is not None:
            nc_results += [{"caption": decode_caption(tokenizer, i), "image_id": n + "_n"} for n, i in zip(names, nc_ids)]
    return results + nc_results


@torch.no_grad()
def caption_cross_entropy(model: CLIP4IDC, loader, device: torch.device, datatype: str) -> float:
    """Teacher-forced token cross-entropy of the change captions (CLEVR: of the semantic pairs) over a loader."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        tensors = [t.to(device) for t in batch[:-1]]
        if datatype == "clevr":
            _i, _m, _s, bef, aft, _nsc, _pm, in_cap, dec_mask, out_cap = tensors[:10]
        else:
            _i, _m, _s, bef, aft, _pm, in_cap, dec_mask, out_cap = tensors
        _, tokens = model.get_visual_output(bef, aft)
        logits = model.decoder_logits(tokens, in_cap.flatten(1), dec_mask.flatten(1))
        n = int((out_cap != 0).sum())
        total += float(model.caption_loss(logits, out_cap)) * n
        count += n
    return total / max(1, count)


def log_retrieval(metrics: dict[str, dict[str, float]]) -> None:
    tv, vt = metrics["text_to_pair"], metrics["pair_to_text"]
    logger.info("Text-to-Image-Pair:")
    logger.info("\t>>>  R@1: %.1f - R@5: %.1f - R@10: %.1f - Median R: %.1f - Mean R: %.1f",
                tv["R1"], tv["R5"], tv["R10"], tv["MR"], tv["MeanR"])
    logger.info("Image-Pair-to-Text:")
    logger.info("\t>>>  V2T$R@1: %.1f - V2T$R@5: %.1f - V2T$R@10: %.1f - V2T$Median R: %.1f - V2T$Mean R: %.1f",
                vt["R1"], vt["R5"], vt["R10"], vt["MR"], vt["MeanR"])
