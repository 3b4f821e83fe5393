"""DMN training and evaluation: ``python -m dmn_pytorch.train ...`` (the original's flags and defaults).

Evaluation only: ``--eval-first --epochs 0``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, Sampler, default_collate

from shared_eval.masks import MaskIoUResult

from .data.referit_loader import ReferDataset, collate_padded, collate_present
from .data.refer_files import DataFileError
from .data.transforms import image_to_tensor, resize_longer_side
from .engine import EpochProgress, TrainConfig, evaluate, train_one_epoch
from .models.checkpoint import (CheckpointError, load_dmn_weights, load_failure_reason, load_pretrained_dpn,
                                read_state_dict)
from .models.dmn import DMN
from .training_state import (ResumePoint, atomic_torch_save, capture_rng_states, pending_gradients,
                             restore_gradients, restore_rng_states, run_identity, select_resume_point, state_file)
from .utils.dist import (DistInfo, all_ranks_agree, broadcast_from_main, init_distributed_mode,
                         main_process_first)
from .utils.visdom import VisdomPlots
from .utils.word_utils import PAD_TOKEN, EmptyQueryError

logger = logging.getLogger("dmn_pytorch")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Dynamic Multimodal Network training routine")
    # Data loading
    parser.add_argument("--data", type=str, default="../referit_data", help="path to the datasets root folder")
    parser.add_argument("--split-root", type=str, default="data",
                        help="folder for the preprocessed split files (the original ignored this flag)")
    parser.add_argument("--save-folder", default="weights/", help="location to save checkpoint models")
    parser.add_argument("--snapshot", default="weights/qseg_weights.pth",
                        help="weights loaded at start when the file exists")
    parser.add_argument("--num-workers", default=2, type=int, help="unused (the original used -j/--workers)")
    parser.add_argument("--dataset", default="unc", type=str, help="referit, unc, unc+ or gref")
    parser.add_argument("--split", default="train", type=str, help="split used to train")
    parser.add_argument("--val", default=None, type=str, help="split used to validate (none: no evaluation)")
    parser.add_argument("--eval-first", default=False, action="store_true", help="evaluate before training")
    parser.add_argument("-j", "--workers", default=4, type=int, metavar="N", help="data loading workers")
    # Training procedure
    parser.add_argument("--no-cuda", action="store_true", help="do not use CUDA")
    parser.add_argument("--log-interval", type=int, default=200, metavar="N", help="report interval (batches)")
    parser.add_argument("--backup-iters", type=int, default=10000, help="snapshot interval (batches)")
    parser.add_argument("--batch-size", default=1, type=int,
                        help="training batch size (the original supported only 1; >1 pads images and queries)")
    parser.add_argument("--epochs", type=int, default=40, help="upper epoch limit")
    parser.add_argument("--lr", "--learning-rate", default=1e-5, type=float, help="initial learning rate")
    parser.add_argument("--patience", default=2, type=int, help="patience epochs for LR decrease")
    parser.add_argument("--seed", type=int, default=1111, help="random seed")
    parser.add_argument("--iou-loss", action="store_true", help="use IoULoss instead of BCE")
    parser.add_argument("--start-epoch", type=int, default=1, help="epoch number to resume")
    parser.add_argument("--optim-snapshot", type=str, default="weights/qsegnet_optim.pth",
                        help="optimizer state loaded at start when the file exists")
    parser.add_argument("--accum-iters", default=100, type=int, help="batches accumulated per optimizer step")
    parser.add_argument("--pin-memory", default=False, action="store_true", help="DataLoader pin_memory")
    # Model
    parser.add_argument("--size", default=512, type=int, help="longer image side")
    parser.add_argument("--time", default=-1, type=int, help="maximum query tokens (forced -1 with batch size 1)")
    parser.add_argument("--emb-size", default=1000, type=int, help="word embedding dimensions")
    parser.add_argument("--hid-size", default=1000, type=int, help="language model hidden size")
    parser.add_argument("--vis-size", default=2688, type=int, help="backbone output channels")
    parser.add_argument("--num-filters", default=10, type=int, help="dynamic filters per step")
    parser.add_argument("--mixed-size", default=1000, type=int, help="fused multimodal features")
    parser.add_argument("--hid-mixed-size", default=1005, type=int, help="multimodal SRU hidden size")
    parser.add_argument("--lang-layers", default=3, type=int, help="language SRU/LSTM layers")
    parser.add_argument("--mixed-layers", default=3, type=int, help="multimodal SRU/LSTM layers")
    parser.add_argument("--backend", default="dpn92", type=str,
                        help="visual backbone: dpn92 (README), dpn68, dpn68b, dpn98, dpn131, dpn107, dpn_toy")
    parser.add_argument("--mix-we", action="store_true", default=False, help="filters from [word emb, hidden]")
    parser.add_argument("--lstm", action="store_true", default=False, help="LSTM instead of SRU")
    parser.add_argument("--high-res", action="store_true", help="add the upsampling module (full-res output)")
    parser.add_argument("--upsamp-mode", default="bilinear", type=str, help="upsampling interpolation mode")
    parser.add_argument("--upsamp-size", default=3, type=int, help="upsampling conv kernel size")
    parser.add_argument("--upsamp-amplification", default=32, type=int, help="upsampling scale (power of two)")
    parser.add_argument("--upsamp-width", default=512, type=int,
                        help="width of the first upsampling conv, halved at each step (hard-coded 512 originally)")
    parser.add_argument("--dmn-freeze", action="store_true", default=False, help="detach the low-res DMN output")
    # Other
    parser.add_argument("--visdom", type=str, default=None, help="visdom server host or URL (optional)")
    parser.add_argument("--visdom-port", type=int, default=None, help="visdom port (default: the URL's, else 80)")
    parser.add_argument("--env", type=str, default="DMN-train", help="visdom environment name")
    # Beyond the original
    parser.add_argument("--no-pretrained", action="store_true",
                        help="do not load DPN ImageNet weights (the original always did)")
    parser.add_argument("--save-vis", type=str, default=None, help="write image|GT|prediction PNGs of evaluation here")
    parser.add_argument("--resume", type=str, default=None,
                        help="continue from this training state (written every --backup-iters and each epoch), "
                             "also under other flags; without it, a run restarted with the same command continues "
                             "from its own state in --save-folder")
    parser.add_argument("--max-batches-per-epoch", type=int, default=0,
                        help="stop each epoch after this many batches (0: the whole split); for quick runs")
    parser.add_argument("--shuffle-queries", action="store_true",
                        help="control experiment: train on queries shuffled across samples (language made useless)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    parser.add_argument("--skip_corrupt", action="store_true",
                        help="skip samples whose image, mask or query is unusable (each logged, the count at the "
                             "end) instead of stopping at the first one")
    parser.add_argument("--per-pixel-msru", action="store_true",
                        help="fix: run the multimodal SRU over time for each pixel (paper) instead of the as-built "
                             "pixel-major sequence")
    parser.add_argument("--eval-running-stats", action="store_true",
                        help="fix: evaluate with BatchNorm running statistics (the original used train mode)")
    parser.add_argument("--fix-accum-start", action="store_true",
                        help="fix: first optimizer step after --accum-iters batches (the original stepped after one)")
    parser.add_argument("--fix-iou-loss-scale", action="store_true",
                        help="fix: --iou-loss as 1 - IoU (the original divides by the map height)")
    return parser


def build_datasets(args: argparse.Namespace) -> tuple[ReferDataset, ReferDataset | None]:
    transform = partial(image_to_tensor, size=args.size)
    # Low-res: the target is resized like the image (soft edges kept); high-res: the original mask.
    target_transform = None if args.high_res else partial(resize_longer_side, size=args.size)
    common = dict(data_root=args.data, split_root=args.split_root, dataset=args.dataset, transform=transform,
                  annotation_transform=target_transform, max_query_len=args.time, skip_corrupt=args.skip_corrupt)
    train_set = ReferDataset(split=args.split, **common)
    if args.shuffle_queries:
        train_set.shuffle_queries(args.seed)
    val_set = ReferDataset(split=args.val, **common) if args.val is not None else None
    return train_set, val_set


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch (so a resumed run sees the same order), sharded across ranks, optionally
    skipping the batches already done."""

    def __init__(self, size: int, seed: int, dist: DistInfo, limit: int = 0):
        self.size, self.seed, self.dist, self.limit = size, seed, dist, limit
        self.epoch, self.skip = 1, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        indices = order.tolist()[self.dist.rank :: self.dist.world_size]
        return indices[: self.limit] if self.limit > 0 else indices

    @property
    def epoch_size(self) -> int:
        return len(self._indices())

    def __iter__(self):
        return iter(self._indices()[self.skip :])

    def __len__(self) -> int:
        return max(len(self._indices()) - self.skip, 0)


def build_model(args: argparse.Namespace, dict_size: int) -> DMN:
    return DMN(dict_size=dict_size, emb_size=args.emb_size, hid_size=args.hid_size, vis_size=args.vis_size,
               num_filters=args.num_filters, mixed_size=args.mixed_size, hid_mixed_size=args.hid_mixed_size,
               lang_layers=args.lang_layers, mixed_layers=args.mixed_layers, backend=args.backend,
               mix_we=args.mix_we, lstm=args.lstm, high_res=args.high_res, upsampling_mode=args.upsamp_mode,
               upsampling_size=args.upsamp_size, upsampling_amplification=args.upsamp_amplification,
               dmn_freeze=args.dmn_freeze, per_pixel_msru=args.per_pixel_msru, upsampling_width=args.upsamp_width)


class OutputPathError(ValueError):
    """An output folder that cannot be written; the message names the flag, the path and the fix."""


def ensure_writable_folder(folder: Path, flag: str) -> None:
    """Create ``folder`` and write a probe file there, so a bad output path stops before any training."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputPathError(f"{flag} {folder} cannot be written ({err.strerror}): choose a writable folder") from None


def discard_training_state(argv: list[str]) -> None:
    """For drivers whose every stage is a fresh run by design (the demo, the language check): the command ``argv``
    then starts from scratch instead of continuing, or refusing, the state an earlier run left in its folder."""
    args = get_args_parser().parse_args(argv)
    state_file(Path(args.save_folder), args.dataset, args.split).unlink(missing_ok=True)


def check_same_resume_point(resume: ResumePoint | None, dist: DistInfo) -> None:
    """Every rank must continue from the same point: a node that cannot see rank 0's files would start over."""
    seen = None if resume is None else (resume.state["epoch"], resume.state["next_batch"])
    if not all_ranks_agree(seen, dist):
        here = f"{resume.path} at epoch {seen[0]}, batch {seen[1]}" if resume is not None and seen else "none"
        raise CheckpointError(f"the ranks found different training states in --save-folder (this one: {here}): "
                              f"put --save-folder on storage every node shares")


def load_optimizer_state(optimizer: torch.optim.Optimizer, path: Path) -> None:
    try:
        optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - unreadable or another model's: the same one-line answer
        raise CheckpointError(f"--optim-snapshot {path} does not fit this model's optimizer "
                              f"({load_failure_reason(err)}): give this model's optimizer file or remove it") from None


def report_scores(scores: MaskIoUResult, epoch: int) -> dict:
    """Log the original's tables (precision@k per threshold, cumulative IoU per threshold, maximum) and return a
    JSON-able summary holding all of them."""
    best = scores.best_index
    rule = "-" * 32
    lines = []
    for index, threshold in enumerate(scores.thresholds):
        lines += [rule, f"precision@X for Threshold {threshold:<15.3E}"]
        lines += [f"precision@{k} = {v[index]:.5f}" for k, v in scores.precision.items()]
    lines += [rule + "\n", "FINAL accumulated IoUs at different thresholds:", f"{'Thresholds':15}| {'mIoU':15} |", rule]
    lines += [f"{t:<15.3E}| {iou:<15.13f} |" for t, iou in zip(scores.thresholds, scores.overall_iou)]
    lines += [rule, f"Maximum IoU: {scores.best_overall_iou:<15.13f} - Threshold: {scores.best_threshold:<15.13f}"]
    logger.info("\n".join(lines))
    return {"epoch": epoch, "max_iou": scores.best_overall_iou, "threshold": scores.best_threshold,
            "samples": scores.num_samples, "mean_iou": float(scores.mean_iou[best]),
            "thresholds": [float(t) for t in scores.thresholds],
            "cumulative_iou": [float(x) for x in scores.overall_iou],
            "precision": {str(k): float(v[best]) for k, v in scores.precision.items()},
            "precision_per_threshold": {str(k): [float(x) for x in v] for k, v in scores.precision.items()}}


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    dist = init_distributed_mode()
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING, format="%(message)s")
    logger.info("Argument list to program\n%s", "\n".join(f"--{k} {v}" for k, v in vars(args).items()))
    if args.batch_size == 1:
        args.time = -1  # original: batch size 1 forces variable-length queries
    use_cuda = not args.no_cuda and torch.cuda.is_available()
    device = torch.device(f"cuda:{dist.local_rank}" if use_cuda else "cpu")
    torch.manual_seed(args.seed)
    save_folder = Path(args.save_folder)
    stem = f"dmn_{args.dataset}_{args.split}"
    own_state = state_file(save_folder, args.dataset, args.split)
    if dist.is_main:  # output paths and the resume file are checked before any data is read
        ensure_writable_folder(save_folder, "--save-folder")
        if args.save_vis:
            ensure_writable_folder(Path(args.save_vis), "--save-vis")
    resume = select_resume_point(args, own_state, will_train=args.epochs >= args.start_epoch)
    check_same_resume_point(resume, dist)

    with main_process_first(dist):  # one process writes the split files
        train_set, val_set = build_datasets(args)
    pad_index = train_set.corpus.dictionary[PAD_TOKEN]
    sampler = EpochSampler(len(train_set), args.seed, dist, args.max_batches_per_epoch * args.batch_size)
    collate = default_collate if args.batch_size == 1 else partial(collate_padded, pad_index=pad_index)
    # Its own generator, seeded per epoch: worker seeds do not depend on, nor advance, the global RNG (restored
    # on resume).
    loader_generator = torch.Generator()
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler,
                              collate_fn=partial(collate_present, collate=collate), num_workers=args.workers,
                              pin_memory=args.pin_memory, generator=loader_generator)
    # Evaluation goes one image at a time, as the original (BatchNorm statistics are per image in train mode).
    val_loader = (DataLoader(val_set, batch_size=1, collate_fn=collate_present, num_workers=args.workers,
                             pin_memory=args.pin_memory)
                  if val_set is not None else None)
    skipped = {"train": 0, "val": 0}

    net = build_model(args, len(train_set.corpus))
    if args.no_pretrained:
        logger.info("--no-pretrained: the DPN visual module starts from random initialisation")
    else:
        full_checkpoint = str(resume.path) if resume is not None else (
            args.snapshot if os.path.exists(args.snapshot) else None)
        load_pretrained_dpn(net.langvis.base, args.backend, Path(args.data), replaced_by=full_checkpoint)
    if os.path.exists(args.snapshot):
        logger.info("Loading state dict from: %s", args.snapshot)
        load_dmn_weights(net, read_state_dict(args.snapshot), args.snapshot)
    net.to(device)
    model = net
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dist.local_rank] if use_cuda else None, find_unused_parameters=args.dmn_freeze)

    # fused: one kernel for all parameters (same update as the original Adam, several times faster on CPU)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, fused=True)
    scheduler = ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=args.patience)
    if os.path.exists(args.optim_snapshot):
        load_optimizer_state(optimizer, Path(args.optim_snapshot))
    start_epoch, skip_batches, best_val_loss = args.start_epoch, 0, None
    progress = EpochProgress()
    results: dict = {"evaluations": []}
    loss_history: dict[int, list[float]] = {}
    if resume is not None:
        state = resume.state
        load_dmn_weights(net, state["model"], str(resume.path))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, skip_batches, best_val_loss = state["epoch"], state["next_batch"], state["best_val_loss"]
        # States of earlier versions hold only the keys above.
        done = state.get("epoch_progress", {})
        progress = EpochProgress([float(x) for x in done.get("losses", [])], done.get("pending_loss", 0.0),
                                 done.get("samples", 0))
        restore_gradients(net, state.get("pending_grads", {}))
        results["evaluations"] = list(state.get("evaluations", []))
        loss_history = {int(e): [float(x) for x in v] for e, v in state.get("loss_history", {}).items()}
        skipped.update(state.get("skipped", {}))
        if "rng" in state:
            restore_rng_states(state["rng"])
        logger.info("Resuming from %s at epoch %d, batch %d", resume.path, start_epoch, skip_batches)
    else:
        # Original: the scheduler is stepped once with the start epoch as if it were a validation loss.
        scheduler.step(args.start_epoch)

    plots = VisdomPlots(args.visdom, args.visdom_port, args.env) if args.visdom and dist.is_main else None
    cfg = TrainConfig(accum_iters=args.accum_iters, log_interval=args.log_interval, backup_iters=args.backup_iters,
                      use_iou_loss=args.iou_loss, fix_iou_loss_scale=args.fix_iou_loss_scale,
                      fix_accum_start=args.fix_accum_start, amp=args.amp)
    identity = run_identity(args)

    def run_evaluation(epoch: int) -> float:
        assert val_loader is not None and val_set is not None
        vis_dir = Path(args.save_vis) / f"epoch{epoch:03d}" if args.save_vis else None
        scores = evaluate(net, val_loader, device, running_stats=args.eval_running_stats, amp=args.amp,
                          save_vis=vis_dir, describe=lambda i: val_set.images[i][2])
        skipped["val"] += len(val_set) - scores.num_samples
        summary = report_scores(scores, epoch)
        results["evaluations"].append(summary)
        out = save_folder / f"eval_{args.dataset}_{args.val}.json"
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, out)
        if plots is not None:
            plots.append("val_plt", epoch, summary["max_iou"])
        return summary["max_iou"]

    def save_training_state(epoch: int, next_batch: int, done: EpochProgress) -> None:
        """Everything a restart needs to continue exactly; rank 0's RNG states stand for every rank's (all are
        seeded alike and draw alike)."""
        atomic_torch_save({
            "model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch, "next_batch": next_batch, "best_val_loss": best_val_loss, "run_args": identity,
            "epoch_progress": {"losses": torch.tensor(done.losses, dtype=torch.float64),
                               "pending_loss": done.pending_loss, "samples": done.samples},
            "pending_grads": pending_gradients(net) if next_batch > 0 else {},
            "loss_history": {e: torch.tensor(v, dtype=torch.float64) for e, v in loss_history.items()},
            "evaluations": results["evaluations"], "skipped": dict(skipped), "rng": capture_rng_states()},
            own_state)

    def backup(epoch: int, batch_idx: int, done: EpochProgress) -> None:
        if not dist.is_main:
            return
        atomic_torch_save(net.state_dict(), save_folder / f"{stem}_snapshot.pth")
        atomic_torch_save(optimizer.state_dict(), save_folder / f"{stem}_optim.pth")
        save_training_state(epoch, batch_idx + 1, done)

    if args.eval_first and val_loader is None:
        logger.warning("--eval-first does nothing without --val SPLIT")
    if args.eval_first and val_loader is not None and dist.is_main and not (resume is not None and resume.restart):
        run_evaluation(0)
    for epoch in range(start_epoch, args.epochs + 1):
        sampler.set_epoch(epoch, skip_batches * args.batch_size)
        loader_generator.manual_seed(args.seed * 1000 + epoch)
        result = train_one_epoch(model, train_loader, optimizer, epoch, cfg, device, plots,
                                 start_batch=skip_batches, progress=progress, on_backup=partial(backup, epoch))
        skipped["train"] += sampler.epoch_size - result.samples
        skip_batches, progress = 0, EpochProgress()
        loss_history[epoch] = result.losses
        val_loss = result.mean_loss
        if val_loader is not None and dist.is_main:
            val_loss = 1 - run_evaluation(epoch)
        val_loss = broadcast_from_main(val_loss, dist, device)
        scheduler.step(val_loss)
        logger.info("| end of epoch %3d | epoch loss %.6f |", epoch, result.mean_loss)
        if dist.is_main:
            if best_val_loss is None or val_loss < best_val_loss:
                best_val_loss = val_loss
                atomic_torch_save(net.state_dict(), save_folder / "dmn_best_weights.pth")
            save_training_state(epoch + 1, 0, EpochProgress())
    if args.skip_corrupt:
        logger.warning("--skip_corrupt: skipped %d corrupt training sample(s) and %d evaluation sample(s) in all "
                       "(each logged above)", skipped["train"], skipped["val"])
    return results


def one_line(err: BaseException) -> str:
    """The error's message on one line; for one re-raised from a DataLoader worker, the worker's own message (the
    last line of the wrapped traceback) without its class name."""
    text = str(err).strip()
    if "Original Traceback" in text:
        return re.sub(r"^[\w.]*(Error|Exception)\s*:\s*", "", text.splitlines()[-1].strip())
    # The file and the fix come first in our messages: keep all of it.
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or repr(err)


def cli() -> None:
    """The command line: a user's mistake (data, checkpoint, output path, flag value) ends in one line, exit 2."""
    try:
        main()
    except (DataFileError, CheckpointError, EmptyQueryError, ValueError) as err:
        print(f"dmn_pytorch.train: error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit("Exiting from training early")


if __name__ == "__main__":
    cli()
