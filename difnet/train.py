"""DIFNet training: cross-entropy, then SCST (CIDEr-D reward), validating and testing after every epoch.

    python train.py --mode difnet_lrp --exp_name DIFNet_lrp [--features_path ... --pixel_path ... --annotation_folder ...]
    torchrun --nproc_per_node=2 train.py ...   # data-parallel (gloo on CPU, nccl on GPU); --batch_size stays global
    torchrun --nnodes=M --nproc_per_node=N --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT --rdzv-id=RUN \
        --max-restarts=3 train.py ...         # several machines; a restarted group resumes from <exp>_last.pth
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import warnings

import numpy as np
import torch
from torch.optim import Adam
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.tensorboard import SummaryWriter

import engine
from builders import (add_data_args, add_model_args, config_dict, load_checkpoint, load_weights, model_config,
                      save_checkpoint, visual_inputs, vocab_for_training)
from data.coco import (CaptionDataset, CorruptSamples, ImageDataset, check_visual_inputs, collate_captions,
                       collate_images, load_splits)
from data.text import CaptionTokenizer
from distributed import (DistInfo, barrier, broadcast_float, broadcast_parameters, gather_objects,
                         init_distributed_mode)
from errors import ensure_writable_dir, run_entry_point
from models import CaptioningModel
from shared_eval.captions import CiderD, tokenize

logger = logging.getLogger("difnet")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="DIFNet")
    parser.add_argument("--exp_name", type=str, default="DIFNet", help="'test' runs one batch per loop (smoke run)")
    parser.add_argument("--batch_size", type=int, default=50, help="captions per XE batch (SCST: batch_size // 5 images)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--m", type=int, default=40, help="memory slots (unused, as in the original)")
    parser.add_argument("--warmup", type=int, default=10000, help="Noam warm-up (unused, as in the original)")
    parser.add_argument("--resume_last", action="store_true")
    parser.add_argument("--resume_best", action="store_true")
    parser.add_argument("--logs_folder", type=str, default="./output/tensorboard_logs")
    parser.add_argument("--model_path", type=str, default="./output/saved_transformer_models")
    add_data_args(parser)
    add_model_args(parser)
    # schedule constants of the original, as flags
    parser.add_argument("--xe_base_lr", type=float, default=1e-4, help="peak XE learning rate of the epoch schedule")
    parser.add_argument("--rl_lr", type=float, default=5e-6, help="SCST learning rate")
    parser.add_argument("--max_epochs", type=int, default=100, help="epochs per launch")
    parser.add_argument("--switch_epoch", type=int, default=20, help="switch to SCST after this epoch index")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--no_meteor", action="store_true", help="skip METEOR (Java) in the per-epoch metrics")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the training steps (CUDA only)")
    return parser


def xe_lr_lambda(base_lr: float):
    """Learning rate of XE epoch s (the scheduler steps once per epoch, s = epoch + 1)."""

    def lr(s: int) -> float:
        if s <= 3:
            return base_lr * s / 4
        if s <= 10:
            return base_lr
        if s <= 12:
            return base_lr * 0.2
        return base_lr * 0.2 * 0.2

    return lr


def set_seeds(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)


def rng_states() -> dict:
    return {
        "torch_rng_state": torch.get_rng_state(),
        "cuda_rng_state": torch.cuda.get_rng_state() if torch.cuda.is_available() else torch.empty(0, dtype=torch.uint8),
        "numpy_rng_state": np.random.get_state(),
        "random_rng_state": random.getstate(),
    }


def restore_rng_states(data: dict, info: DistInfo | None = None) -> None:
    """The RNG states a checkpoint saved for this rank (rank 0's, the original's keys, when it holds no per-rank
    states for this world size)."""
    per_rank = data.get("rank_rng_states")
    if info is not None and per_rank is not None and len(per_rank) == info.world_size:
        data = per_rank[info.rank]
    torch.set_rng_state(data["torch_rng_state"])
    if torch.cuda.is_available() and data["cuda_rng_state"].numel():
        torch.cuda.set_rng_state(data["cuda_rng_state"])
    np.random.set_state(data["numpy_rng_state"])
    random.setstate(data["random_rng_state"])


def elastic_restart() -> bool:
    """True in a worker that torchrun restarted (--max-restarts) after a failure of the group."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def run_id() -> str | None:
    """torchrun's --rdzv-id of this run (None outside torchrun)."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def elastic_checkpoint(last_path: str) -> dict | None:
    """The last checkpoint of this run when torchrun restarted the group after a failure (--max-restarts), else
    None (also when the file was written by another run, e.g. an earlier launch)."""
    if not elastic_restart() or not os.path.exists(last_path):
        return None
    data = load_checkpoint(last_path)
    return data if data.get("run_id") == run_id() else None


def make_loader(dataset, batch_size: int, info: DistInfo, args, collate, *, shuffle: bool, drop_last: bool = False,
                seed: int = 1234) -> DataLoader:
    """Training loaders shard (and shuffle, reproducibly per epoch) across processes; evaluation ones do not."""
    sampler = None
    if shuffle:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed)
        batch_size = max(batch_size // info.world_size, 1)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=args.workers,
                      collate_fn=collate, drop_last=drop_last, persistent_workers=args.workers > 0)


def log_scores(writer: SummaryWriter | None, split: str, scores: dict, epoch: int) -> None:
    if writer is None:
        return
    writer.add_scalar(f"data/{split}_cider", scores["CIDEr"], epoch)
    writer.add_scalar(f"data/{split}_bleu1", scores["Bleu_1"], epoch)
    writer.add_scalar(f"data/{split}_bleu4", scores["Bleu_4"], epoch)
    if "METEOR" in scores:
        writer.add_scalar(f"data/{split}_meteor", scores["METEOR"], epoch)
    writer.add_scalar(f"data/{split}_rouge", scores["ROUGE_L"], epoch)


def main(args: argparse.Namespace) -> None:
    # LambdaLR.step() runs at the start of each XE epoch, before any optimizer step, as in the original
    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
    info = init_distributed_mode()
    set_seeds(args.seed)
    device = torch.device(args.device if args.device != "cuda" or not info.distributed else f"cuda:{info.local_rank}")
    logger.info("%s", args)
    smoke = args.exp_name == "test"
    cache = args.decode_cache == "on"
    if info.is_main:  # outputs first: a run must not fail at its first checkpoint
        ensure_writable_dir(args.model_path, "--model_path")
        ensure_writable_dir(os.path.join(args.logs_folder, args.exp_name), "--logs_folder")

    splits = load_splits(args.annotation_folder)
    grid, seg = visual_inputs(args)
    if info.is_main:
        check_visual_inputs(splits["train"] + splits["val"] + splits["test"], grid, seg)
    tokenizer = CaptionTokenizer()
    train_and_val_captions = [ex.caption for ex in splits["train"] + splits["val"]]
    if info.is_main:
        vocab = vocab_for_training(args.vocab_path, args.annotation_folder, train_and_val_captions, tokenizer)
    barrier(info)
    if not info.is_main:
        vocab = vocab_for_training(args.vocab_path, args.annotation_folder, train_and_val_captions, tokenizer)
    writer = SummaryWriter(log_dir=os.path.join(args.logs_folder, args.exp_name)) if info.is_main else None

    cfg = model_config(args, vocab)
    model = CaptioningModel(cfg).to(device)
    broadcast_parameters(model, info)

    collate = collate_captions(vocab)
    corrupt = CorruptSamples() if args.skip_corrupt else None
    loader_train = make_loader(CaptionDataset(splits["train"], grid, seg, tokenizer, corrupt), args.batch_size, info,
                               args, collate, shuffle=True, drop_last=True, seed=args.seed)
    loader_val = make_loader(CaptionDataset(splits["val"], grid, seg, tokenizer, corrupt), args.batch_size, info,
                             args, collate, shuffle=False)
    dict_train = make_loader(ImageDataset(splits["train"], grid, seg, corrupt), args.batch_size // 5, info, args,
                             collate_images, shuffle=True, seed=args.seed)
    dict_val = make_loader(ImageDataset(splits["val"], grid, seg, corrupt), args.batch_size // 5, info, args,
                           collate_images, shuffle=False)
    dict_test = make_loader(ImageDataset(splits["test"], grid, seg, corrupt), args.batch_size // 5, info, args,
                            collate_images, shuffle=False)
    # CIDEr-D document frequencies over all training captions, each caption one document (as the original)
    scorer = CiderD.from_references([[c] for c in tokenize([ex.caption for ex in splits["train"]])])

    optim = Adam(model.parameters(), lr=1, betas=(0.9, 0.98))
    scheduler = LambdaLR(optim, xe_lr_lambda(args.xe_base_lr))
    loss_fn = torch.nn.NLLLoss(ignore_index=vocab.stoi["<pad>"])
    use_rl, best_cider, patience, start_epoch = False, 0.0, 0, 0
    last_path = os.path.join(args.model_path, f"{args.exp_name}_last.pth")
    best_path = os.path.join(args.model_path, f"{args.exp_name}_best.pth")

    end_epoch = args.max_epochs
    data = elastic_checkpoint(last_path)
    elastic = data is not None
    if elastic:
        # torchrun restarted the group: continue this run from its last checkpoint, up to the launch's end epoch
        logger.info("Elastic restart %s of run %s", os.environ["TORCHELASTIC_RESTART_COUNT"], run_id())
        resume_path, end_epoch = last_path, data["end_epoch"]
    elif args.resume_last or args.resume_best:
        resume_path = last_path if args.resume_last else best_path
        data = load_checkpoint(resume_path) if os.path.exists(resume_path) else None
    if data is not None:
        restore_rng_states(data, info)
        load_weights(model, data["state_dict"], resume_path, strict=False)  # strict=False as the original
        use_rl = data["use_rl"]
        if use_rl:
            optim = Adam(model.parameters(), lr=args.rl_lr)
        optim.load_state_dict(data["optimizer"])
        scheduler.load_state_dict(data["scheduler"])
        start_epoch, best_cider, patience = data["epoch"] + 1, data["best_cider"], data["patience"]
        if not elastic:
            end_epoch = start_epoch + args.max_epochs  # the original's --resume_last/--resume_best
        logger.info("Resuming from epoch %d, validation loss %f, and best cider %f (patience %d)",
                    data["epoch"], data["val_loss"], data["best_cider"], patience)

    logger.info("Training starts")
    for e in range(start_epoch, end_epoch):
        for loader in (loader_train, dict_train):
            loader.sampler.set_epoch(e)
        if not use_rl:
            scheduler.step()
            train_loss = engine.train_xe(model, loader_train, optim, loss_fn, device, e, info, smoke=smoke,
                                         bf16=args.bf16)
        else:
            train_loss, reward, reward_baseline = engine.train_scst(model, dict_train, optim, scorer, vocab, device, e,
                                                                    info, smoke=smoke, bf16=args.bf16, cache=cache)
            if writer is not None:
                writer.add_scalar("data/reward", reward, e)
                writer.add_scalar("data/reward_baseline", reward_baseline, e)
        if writer is not None:
            writer.add_scalar("data/train_loss", train_loss, e)

        val_loss = val_cider = 0.0
        if info.is_main:
            val_loss = engine.evaluate_loss(model, loader_val, loss_fn, device, e, smoke=smoke)
            writer.add_scalar("data/val_loss", val_loss, e)
            captions = engine.generate_captions(model, dict_val, vocab, device, f"Epoch {e} - evaluation", smoke=smoke,
                                                cache=cache)
            scores = engine.score_captions(captions, meteor=not args.no_meteor)
            logger.info("Epoch %d: train loss %.4f, val loss %.4f; validation scores %s", e, train_loss, val_loss,
                        engine.original_format(scores))
            val_cider = scores["CIDEr"]
            log_scores(writer, "val", scores, e)
            # the original also scores the test split after every epoch
            captions = engine.generate_captions(model, dict_test, vocab, device, f"Epoch {e} - test", smoke=smoke,
                                                cache=cache)
            scores = engine.score_captions(captions, meteor=not args.no_meteor)
            logger.info("Epoch %d: test scores %s", e, engine.original_format(scores))
            log_scores(writer, "test", scores, e)
            writer.flush()
        val_cider = broadcast_float(val_cider, info)

        best = val_cider >= best_cider
        if best:
            best_cider, patience = val_cider, 0
        else:
            patience += 1
        switch_to_rl = exit_train = False
        if patience == args.patience:
            if not use_rl:
                use_rl, switch_to_rl, patience = True, True, 0
                optim = Adam(model.parameters(), lr=args.rl_lr)
                logger.info("Switching to RL")
            else:
                logger.info("patience reached.")
                exit_train = True
        if not use_rl and e >= args.switch_epoch:
            use_rl, switch_to_rl, patience = True, True, 0
            optim = Adam(model.parameters(), lr=args.rl_lr)
            logger.info("Switching to RL")
        if switch_to_rl and not best:
            data = load_checkpoint(best_path)
            restore_rng_states(data, info)
            load_weights(model, data["state_dict"], best_path)
            logger.info("Resuming from epoch %d, validation loss %f, and best cider %f", data["epoch"],
                        data["val_loss"], data["best_cider"])

        all_rng_states = gather_objects(rng_states(), info)
        if info.is_main:
            save_checkpoint({
                **rng_states(),
                "rank_rng_states": all_rng_states,  # not in the original: each rank's, for elastic restarts
                "run_id": run_id(),
                "end_epoch": end_epoch,
                "epoch": e,
                "val_loss": val_loss,
                "val_cider": val_cider,
                "state_dict": model.state_dict(),
                "optimizer": optim.state_dict(),
                "scheduler": scheduler.state_dict(),
                "patience": patience,
                "best_cider": best_cider,
                "use_rl": use_rl,
                "config": config_dict(cfg),  # not in the original: the model sizes, for test.py
            }, last_path, best_path if best else None)
        barrier(info)
        if exit_train:
            break
    if writer is not None:
        writer.close()
    grid.close()
    if corrupt is not None:
        logger.info("--skip_corrupt: skipped %d corrupt samples in all (reads of a corrupt file repeat each epoch)",
                    corrupt.count)


if __name__ == "__main__":
    run_entry_point(lambda: main(get_args_parser().parse_args()))
