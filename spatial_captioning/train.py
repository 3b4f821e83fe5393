"""Train the spatial transformer captioner: cross-entropy (Noam schedule), then self-critical sequence training.

    python train.py --id spatial_transformer_bu --caption_model spatial_pe --input_json data/cocotalk.json ...
    torchrun --nproc_per_node N train.py ...   (data-parallel; gradients averaged across processes)
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

import models
import opts
from dataloader import DataError, DataLoader
from engine import scst_loss, xe_loss
from eval_utils import eval_split, load_references
from misc import optim as optim_utils
from misc.checkpoint import (CheckpointError, ensure_writable_dir, find_infos, find_model, load_pickle,
                             load_state_dict, load_torch, save_pickle, save_torch)
from misc.distributed import (average_gradients, average_scalar, broadcast_parameters, gather_objects,
                              init_distributed_mode, is_main)
from misc.losses import LabelSmoothing, LanguageModelCriterion, RewardCriterion
from misc.rewards import init_scorer

log = logging.getLogger("train")
NEED_BE_SAME = ("caption_model", "ff_size", "num_layers")  # checked on --start_from, as the original


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_same_model(opt: argparse.Namespace, infos: dict, source: str) -> None:
    saved = vars(infos["opt"])
    for key in NEED_BE_SAME:
        if saved.get(key) != vars(opt)[key]:
            raise CheckpointError(f"--{key} {vars(opt)[key]} disagrees with the checkpoint in {source} "
                                  f"({saved.get(key)})")


def load_resume(opt: argparse.Namespace) -> tuple[dict, dict]:
    if not os.path.isdir(opt.start_from):
        raise CheckpointError(f"--start_from {opt.start_from} is not a directory")
    infos = load_pickle(find_infos(opt.start_from, opt.id))
    check_same_model(opt, infos, opt.start_from)
    histories = {}
    for name in (f"histories_{infos['opt'].id}.pkl", f"histories_{opt.id}.pkl", "histories.pkl"):
        path = os.path.join(opt.start_from, name)
        if os.path.isfile(path):
            histories = load_pickle(path)
            break
    return infos, histories


def run_state_path(opt: argparse.Namespace) -> str:
    return os.path.join(opt.checkpoint_path, f"resume_{opt.id}.pth")


def load_run_state(opt: argparse.Namespace) -> dict | None:
    """This run's own last checkpoint (``--auto_resume 1``): resume_<id>.pth in --checkpoint_path, or None."""
    path = run_state_path(opt)
    if not opt.auto_resume or not os.path.isfile(path):
        return None
    state = load_torch(path, torch.device("cpu"))
    if not isinstance(state, dict) or not {"model", "optimizer", "infos", "histories"} <= state.keys():
        raise CheckpointError(f"{path} is not a resume file written by train.py: remove it, or pass "
                              "--auto_resume 0 to start afresh")
    check_same_model(opt, state["infos"], path)
    return state


def restore_rng(infos: dict, rank: int, world: int) -> None:
    """Each process gets back the RNG state it had at the checkpoint (dropout and sampling draw from it)."""
    per_rank = infos.get("rng_per_rank")
    if per_rank is not None and len(per_rank) == world:
        set_rng_state(per_rank[rank])
    elif per_rank is not None:
        log.warning("the checkpoint was written by %d processes, this run has %d: random states start from --seed",
                    len(per_rank), world)
    elif infos.get("rng") is not None and world == 1:
        set_rng_state(infos["rng"])


def autocast_for(device: torch.device, bf16: int):
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def current_lr(optimizer, opt: argparse.Namespace) -> float:
    if opt.noamopt:
        return optimizer.rate()
    if opt.reduce_on_plateau:
        return optimizer.current_lr
    return optim_utils.get_lr(optimizer)


def train(opt: argparse.Namespace) -> dict:
    rank, world, device = init_distributed_mode(opt.device)
    main_proc = is_main(rank)
    if not main_proc:
        logging.getLogger().setLevel(logging.WARNING)
    seed_everything(opt.seed + rank)
    if main_proc:  # checked before anything is built or trained: a run must not fail at its first save
        ensure_writable_dir(opt.checkpoint_path, "--checkpoint_path holds the checkpoints")
    if opt.language_eval == 1:
        load_references(opt.ann_file)  # validation needs it: a missing file must stop the run before training
    run_state = load_run_state(opt)
    if run_state is not None:  # a restart of this run (e.g. by torchrun --max-restarts) continues it
        infos, histories = run_state["infos"], run_state["histories"]
        log.info("resuming %s from iteration %d (epoch %d)", run_state_path(opt), infos["iter"], infos["epoch"])
    else:
        if not opt.auto_resume and os.path.isfile(run_state_path(opt)):
            log.warning("--auto_resume 0: starting afresh; the checkpoints in %s will be replaced", opt.checkpoint_path)
        infos, histories = load_resume(opt) if opt.start_from else ({}, {})

    train_loader = DataLoader(opt, "train", infos.get("train"), rank=rank, world_size=world)
    val_loader = DataLoader(opt, "val", length=opt.val_images_use)
    opt.vocab_size = train_loader.vocab_size()
    opt.seq_length = train_loader.seq_length()
    if infos.get("vocab") is not None and infos["vocab"] != train_loader.get_vocab():
        source = run_state_path(opt) if run_state is not None else f"--start_from {opt.start_from}"
        raise CheckpointError(f"the vocabulary of {opt.input_json} differs from the one stored with {source}: use "
                              "the cocotalk.json the checkpoint was trained with")
    iteration = infos.get("iter", 0)
    best_val_score = infos.get("best_val_score") if opt.load_best_score == 1 else None
    val_result_history = histories.get("val_result_history", {})
    loss_history = histories.get("loss_history", {})
    lr_history = histories.get("lr_history", {})
    ss_prob_history = histories.get("ss_prob_history", {})

    model = models.setup(opt).to(device)
    if run_state is not None:
        model.load_state_dict(run_state["model"])
    elif opt.start_from:
        load_state_dict(model, find_model(opt.start_from), device)
    broadcast_parameters(model)
    model.train()
    # --compile: torch.compile of the teacher-forced forward (XE steps); decoding and checkpoints use `model`.
    forward_model = torch.compile(model) if opt.compile else model
    crit = (LabelSmoothing(opt.vocab_size, opt.label_smoothing) if opt.label_smoothing > 0
            else LanguageModelCriterion())
    rl_crit = RewardCriterion()
    optimizer = optim_utils.build(model, opt)
    if opt.noamopt:
        optimizer._step = iteration  # the Noam step count is restored from infos['iter']
    if run_state is not None:
        optimizer.load_state_dict(run_state["optimizer"])
    elif opt.start_from:
        for name in ("optimizer.pth", "optimizer.pt"):
            path = os.path.join(opt.start_from, name)
            if os.path.isfile(path):
                optimizer.load_state_dict(torch.load(path, map_location=device))
                break
    restore_rng(infos, rank, world)
    writer = None
    if main_proc and opt.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(opt.checkpoint_path)
    autocast = autocast_for(device, opt.bf16)

    def build_infos() -> tuple[dict, dict]:
        info = {"train": train_loader.state_dict(), "iter": iteration, "epoch": train_loader.epoch,
                "best_val_score": best_val_score, "opt": opt, "vocab": train_loader.get_vocab(), "rng": rng_state()}
        hist = {"val_result_history": val_result_history, "loss_history": loss_history, "lr_history": lr_history,
                "ss_prob_history": ss_prob_history}
        return info, hist

    def save_checkpoint() -> None:
        """Called by every process (they hand their RNG states to rank 0); rank 0 alone writes. The original's
        files come first; resume_<id>.pth, one file holding the whole state, is replaced last, so a process killed
        at any moment leaves a complete resume file (the previous one until the new one is in place)."""
        rng_per_rank = gather_objects(rng_state())
        if not main_proc:
            return
        info, hist = build_infos()
        info["rng_per_rank"] = rng_per_rank
        save_torch(model.state_dict(), os.path.join(opt.checkpoint_path, "model.pth"))
        save_torch(optimizer.state_dict(), os.path.join(opt.checkpoint_path, "optimizer.pth"))
        save_pickle(info, os.path.join(opt.checkpoint_path, f"infos_{opt.id}.pkl"))
        save_pickle(hist, os.path.join(opt.checkpoint_path, f"histories_{opt.id}.pkl"))
        save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "infos": info,
                    "histories": hist, "world_size": world}, run_state_path(opt))
        log.info("model saved to %s", opt.checkpoint_path)

    def validate() -> None:
        nonlocal best_val_score
        eval_kwargs = {**vars(opt), "split": "val", "dataset": opt.input_json}
        val_loss, predictions, lang_stats = eval_split(model, crit, val_loader, eval_kwargs, device, autocast)
        if opt.reduce_on_plateau:
            optimizer.scheduler_step(-lang_stats["CIDEr"] if lang_stats and "CIDEr" in lang_stats else val_loss)
        if writer:
            writer.add_scalar("validation loss", val_loss, iteration)
            for k, v in (lang_stats or {}).items():
                writer.add_scalar(k, v, iteration)
        val_result_history[iteration] = {"loss": val_loss, "lang_stats": lang_stats, "predictions": predictions}
        score = lang_stats["CIDEr"] if opt.language_eval == 1 else -val_loss
        log.info("iter %d validation: loss %.3f %s", iteration, val_loss, lang_stats or "")
        if best_val_score is None or score > best_val_score:
            best_val_score = score
            info, _ = build_infos()
            save_torch(model.state_dict(), os.path.join(opt.checkpoint_path, "model-best.pth"))
            save_pickle(info, os.path.join(opt.checkpoint_path, f"infos_{opt.id}-best.pkl"))
            log.info("best model saved (score %.4f)", score)

    stop = False
    start = time.time()
    while train_loader.epoch < opt.max_epochs and not stop:
        epoch = train_loader.epoch
        if not opt.noamopt and not opt.reduce_on_plateau:
            if opt.learning_rate_decay_start >= 0 and epoch > opt.learning_rate_decay_start:
                frac = (epoch - opt.learning_rate_decay_start) // opt.learning_rate_decay_every
                optim_utils.set_lr(optimizer, opt.learning_rate * opt.learning_rate_decay_rate ** frac)
            else:
                optim_utils.set_lr(optimizer, opt.learning_rate)
        if opt.scheduled_sampling_start > 0 and epoch > opt.scheduled_sampling_start:
            frac = (epoch - opt.scheduled_sampling_start) // opt.scheduled_sampling_increase_every
            opt.ss_prob = min(opt.scheduled_sampling_increase_prob * frac, opt.scheduled_sampling_max_prob)
        sc_flag = opt.self_critical_after != -1 and epoch >= opt.self_critical_after
        scorer = init_scorer(opt.cached_tokens) if sc_flag else None
        bar = tqdm(total=len(train_loader), desc=f"epoch {epoch}{' scst' if sc_flag else ''}", leave=False,
                   disable=not main_proc or not sys.stderr.isatty())
        for data in train_loader:
            optimizer.zero_grad()
            with autocast:
                if sc_flag:
                    loss, stats = scst_loss(model, rl_crit, scorer, data, device, opt, train_loader.seq_per_img)
                else:
                    loss = xe_loss(forward_model, crit, data, device)
            loss.backward()
            average_gradients(model)
            optim_utils.clip_gradient(model.parameters(), opt.grad_clip)
            optimizer.step()
            iteration += 1
            train_loss = average_scalar(loss.item(), device)
            bar.update(1)
            if iteration % opt.losses_log_every == 0:
                lr = current_lr(optimizer, opt)
                value = stats.reward if sc_flag else train_loss
                log.info("iter %d (epoch %d) %s %.3f lr %.2e %.3fs/iter", iteration, epoch,
                         "avg reward" if sc_flag else "loss", value, lr, (time.time() - start) / opt.losses_log_every)
                start = time.time()
                if writer:
                    writer.add_scalar("train_loss", train_loss, iteration)
                    writer.add_scalar("learning_rate", lr, iteration)
                    writer.add_scalar("scheduled_sampling_prob", getattr(opt, "ss_prob", 0.0), iteration)
                    if sc_flag:
                        writer.add_scalar("avg_reward", stats.reward, iteration)
                        writer.add_scalar("sample_cider", stats.sample_score, iteration)
                        writer.add_scalar("greedy_cider", stats.greedy_score, iteration)
                loss_history[iteration] = value
                lr_history[iteration] = lr
                ss_prob_history[iteration] = getattr(opt, "ss_prob", 0.0)
            if main_proc and iteration % opt.perform_validation_every == 0:
                validate()
            if iteration % opt.save_checkpoint_every == 0:
                save_checkpoint()
            if 0 <= opt.max_iters <= iteration:
                stop = True
                break
        bar.close()
    if iteration % opt.save_checkpoint_every != 0:
        save_checkpoint()  # added: keep the final state even when it is not on a checkpoint boundary
    if writer:
        writer.close()
    if train_loader.skipped or val_loader.skipped:
        log.warning("--skip_corrupt: %d corrupt image(s) skipped (%d in training batches, %d in validation)",
                    train_loader.skipped + val_loader.skipped, train_loader.skipped, val_loader.skipped)
    return {"iter": iteration, "best_val_score": best_val_score}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    opt = opts.parse_opt(argv)
    try:
        train(opt)
    except (DataError, CheckpointError, FileNotFoundError) as err:
        print(f"train.py: {' '.join(str(err).split())}", file=sys.stderr)  # one line, whatever the message
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
