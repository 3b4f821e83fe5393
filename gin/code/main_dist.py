"""Train or evaluate GIN / ZSGNet (the original's entry script).

    python code/main_dist.py UID [--cfg_file=configs/cfg.yaml] --key=value ...
    torchrun --nproc_per_node=N code/main_dist.py UID ...          # DDP: gloo on CPU, nccl on GPU

Every key of configs/cfg.yaml can be overridden (typed, unknown keys rejected). Evaluation only:
``--resume=True --only_val=True --only_test=True [--resume_path=...]``. Outputs go under ``tmp_path``:
txt_logs/UID.txt, ext_logs/UID.txt, tb_logs/UID/, models/UID.pth, predictions/UID/.

The LSTM starts from a new random state on every forward (``--lstm_init=random``, the original's default, kept), so
two runs of the same evaluation give different boxes and accuracies; ``--lstm_init=zeros`` makes them repeatable and
gives the boxes predict.py gives (predict.py starts from zeros by default).
"""
from __future__ import annotations

import json
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from config import (DEFAULT_CFG, ConfigError, anchor_ratios_scales, describe_keys, load_config, merge_overrides,
                    parse_argv, resolve_path, validate, validate_extras)
from data import get_dataloader, get_datasets, load_word_vectors, read_splits
from engine import evaluate, train_one_epoch
from errors import CheckpointError, GinError, exit_with
from models import build_model
from models.evaluator import Evaluator
from models.loss import ZSGLoss
from util.checkpoint import atomic_write_bytes, load_model_state, read_checkpoint, save_checkpoint
from util.dist import barrier, cleanup, get_rank, init_distributed, is_main_process

LOG = logging.getLogger("gin")
IGNORED_LAUNCHER_FLAGS = ("local_rank",)  # torch.distributed.launch passes --local-rank/--local_rank; LOCAL_RANK wins


@dataclass
class RunPaths:
    root: Path
    uid: str

    @property
    def txt_log(self) -> Path:
        return self.root / "txt_logs" / f"{self.uid}.txt"

    @property
    def ext_log(self) -> Path:
        return self.root / "ext_logs" / f"{self.uid}.txt"

    @property
    def tb_dir(self) -> Path:
        return self.root / "tb_logs" / self.uid

    @property
    def model_file(self) -> Path:
        return self.root / "models" / f"{self.uid}.pth"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions" / self.uid

    def create(self) -> None:
        """Create the output folders and check that each takes a file, before any input is read."""
        for d in (self.txt_log.parent, self.ext_log.parent, self.tb_dir, self.model_file.parent, self.predictions_dir):
            try:
                d.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=d):
                    pass
            except OSError as exc:
                raise ConfigError(f"--tmp_path={self.root}: cannot write into {d} ({exc.strerror or exc}); choose "
                                  f"another --tmp_path or move what is in the way") from None
        for f in (self.txt_log, self.ext_log, self.model_file):
            if f.is_dir():
                raise ConfigError(f"--tmp_path={self.root}: {f} is a folder, but this run writes a file there; "
                                  f"choose another --tmp_path or UID")


def setup_logging(paths: RunPaths) -> None:
    LOG.setLevel(logging.DEBUG)
    LOG.handlers.clear()
    if not is_main_process():
        return
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO)
    console.setFormatter(fmt)
    file = logging.FileHandler(paths.ext_log)
    file.setLevel(logging.DEBUG)
    file.setFormatter(fmt)
    for name in ("gin", "models", "data"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.handlers = [console, file]
        logger.propagate = False


def format_row(keys: list[str], values: list[Any]) -> str:
    """The original's txt-log row: each value padded to its column name."""
    cells = [str(v) if isinstance(v, int) else f"{v:.4f}" for v in values]
    return "  ".join(c + " " * (len(k) - len(c)) for k, c in zip(keys, cells))


def write_txt_log(paths: RunPaths, text: str) -> None:
    if is_main_process():
        with paths.txt_log.open("a") as f:
            f.write(text + "\n")


def write_predictions(predictions: list[dict], path: Path, distributed: bool) -> None:
    """Pickle in the original format; under DDP each rank writes ``<rank>_<name>`` (eval_script --num_gpus merges)."""
    import pickle

    if distributed:
        path = path.parent / f"{get_rank()}_{path.name}"
    atomic_write_bytes(path, lambda f: pickle.dump(predictions, f))


class Run:
    """Everything one invocation needs: config, data, model, criterion, evaluator, outputs."""

    def __init__(self, uid: str, cfg: dict[str, Any]) -> None:
        self.uid, self.cfg = uid, cfg
        self.device = torch.device("cuda" if cfg["device"] == "auto" and torch.cuda.is_available()
                                   else "cpu" if cfg["device"] == "auto" else cfg["device"])
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device=cuda but no CUDA device is visible; use --device=cpu or auto")
        self.rank, self.world_size = init_distributed(self.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())  # this process's GPU (LOCAL_RANK)
        if cfg["seed"] >= 0:
            random.seed(cfg["seed"] + self.rank)
            np.random.seed(cfg["seed"] + self.rank)
            torch.manual_seed(cfg["seed"] + self.rank)
        self.paths = RunPaths(Path(cfg["tmp_path"]), uid)
        if is_main_process():
            self.paths.create()
        barrier()
        setup_logging(self.paths)
        LOG.info("run %s: arch=%s ds=%s device=%s world_size=%d", uid, cfg["arch"], cfg["ds_to_use"], self.device,
                 self.world_size)

        self.resume_from = self.checkpoint_to_load() if cfg["resume"] else None
        self.checkpoint = read_checkpoint(self.resume_from) if self.resume_from is not None else None
        splits = read_splits(cfg, resolve_path)
        words = load_word_vectors(cfg["word_vectors"], cfg["emb_dim"])
        self.datasets = datasets = get_datasets(cfg, splits, words, resolve_path)
        loader_args = dict(batch_size=cfg["bs"], num_workers=cfg["nw"], world_size=self.world_size, rank=self.rank)
        self.train_dl = get_dataloader(datasets["train"], is_train=True, **loader_args)
        self.valid_dl = get_dataloader(datasets["valid"], is_train=False, **loader_args)
        self.test_dl = get_dataloader(datasets["test"], is_train=False, **loader_args)

        ratios, scales = anchor_ratios_scales(cfg)
        # A strictly loaded checkpoint replaces every weight: the ImageNet file is then neither needed nor missed.
        replaced = self.resume_from is not None and cfg["strict_load"]
        if replaced:
            LOG.info("backbone weights come from %s (the ImageNet file is not read)", self.resume_from)
        model = build_model(cfg, len(ratios) * len(scales), load_pretrained=not replaced).to(self.device)
        self.model = model
        self.net = model
        if self.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.loss_fn = ZSGLoss(ratios, scales, alpha=cfg["alpha"], gamma=cfg["gamma"], use_focal=cfg["use_focal"],
                               use_softmax=cfg["use_softmax"], use_multi=cfg["use_multi"],
                               matching_threshold=cfg["matching_threshold"], lamb_reg=cfg["lamb_reg"],
                               use_att_loss=cfg["use_att_loss"] and cfg["arch"] == "gin")
        self.eval_fn = Evaluator(ratios, scales, cfg["acc_iou_threshold"])
        self.log_keys = ["epochs"] + [f"{p}_{k}" for k in self.loss_fn.loss_keys + self.eval_fn.met_keys
                                      for p in ("trn", "val")]
        self.num_it = self.num_epoch = 0
        self.best_met = 0.0
        self.history: list[dict[str, float]] = []  # per epoch: epoch, val Acc, train loss
        write_txt_log(self.paths, json.dumps(cfg) + "\n\n" + "  ".join(self.log_keys))

    def checkpoint_to_load(self) -> Path | None:
        """tmp_path/models/UID.pth or --resume_path, or None when training starts from scratch. A missing file is an
        error when evaluating only or when --resume_path names it (the original silently went on with random weights)."""
        explicit = self.cfg["resume_path"] != ""
        path = Path(self.cfg["resume_path"]) if explicit else self.paths.model_file
        evaluating = self.cfg["only_val"] or self.cfg["only_test"]
        if not path.is_file() and not (explicit or evaluating):
            LOG.info("no existing model in %s, starting from scratch", path)
            return None
        if not path.is_file():
            raise CheckpointError(f"--resume: checkpoint {path} not found (train UID first, pass "
                                  f"--resume_path=/path/model.pth, or fetch released weights with 'make gin-data')")
        if not self.cfg["load_normally"]:
            LOG.info("--load_normally=False: model weights from %s are not loaded", path)
            return None
        return path

    def resume(self) -> None:
        """Load the checkpoint found by ``checkpoint_to_load`` (model weights and the run's counters)."""
        if self.checkpoint is None:
            return
        path = self.resume_from
        load_model_state(self.model, self.checkpoint, path, strict=self.cfg["strict_load"])
        self.num_it = int(self.checkpoint.get("num_it", 0))
        self.num_epoch = int(self.checkpoint.get("num_epoch", 0))
        self.best_met = float(self.checkpoint.get("best_met", 0.0))
        LOG.info("loaded model from %s (epoch %d, best val Acc %.4f)", path, self.num_epoch, self.best_met)

    def make_optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg["lr"], betas=(0.9, 0.99))
        if self.cfg["use_reduce_lr_plateau"]:
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=self.cfg["sched_mode"], factor=self.cfg["reduce_factor"], patience=self.cfg["patience"])
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1)
        if self.cfg["load_opt"] and self.checkpoint is not None:
            opt.load_state_dict(self.checkpoint["optimizer_state_dict"])
            if "scheduler_state_dict" in self.checkpoint:
                sched.load_state_dict(self.checkpoint["scheduler_state_dict"])
        return opt, sched

    def save(self, opt, sched) -> None:
        if is_main_process():
            save_checkpoint(self.paths.model_file, self.model, optimizer_state_dict=opt.state_dict(),
                            scheduler_state_dict=sched.state_dict(), num_it=self.num_it, num_epoch=self.num_epoch,
                            cfgtxt=json.dumps(self.cfg), best_met=self.best_met)

    def fit(self, deadline: float | None = None, cpu_budget: float | None = None) -> dict[str, float]:
        """``epochs`` more epochs (fewer when, after an epoch, ``time.monotonic()`` passed ``deadline`` or the
        process used ``cpu_budget`` CPU seconds in this call); the best-val-Acc model is saved with its val predictions."""
        from torch.utils.tensorboard import SummaryWriter

        opt, sched = self.make_optimizer()
        writer = SummaryWriter(str(self.paths.tb_dir)) if is_main_process() else None
        start, cpu_start, val_met = time.time(), time.process_time(), {}
        for _ in range(self.cfg["epochs"]):
            self.num_epoch += 1
            if hasattr(self.train_dl.sampler, "set_epoch"):
                self.train_dl.sampler.set_epoch(self.num_epoch)
            trn_loss, trn_met = train_one_epoch(self.net, self.loss_fn, self.eval_fn, self.train_dl, opt, self.device,
                                                amp=self.cfg["use_amp"], max_batches=self.cfg["max_train_batches"])
            self.num_it += len(self.train_dl) if self.cfg["max_train_batches"] <= 0 else self.cfg["max_train_batches"]
            val_loss, val_met, preds = evaluate(self.net, self.loss_fn, self.eval_fn, self.valid_dl, self.device,
                                                amp=self.cfg["use_amp"], desc="valid")
            if self.cfg["use_reduce_lr_plateau"]:
                sched.step(val_met["Acc"])  # original: in 'min' mode unless --sched_mode=max
            else:
                sched.step()
            if self.best_met < val_met["Acc"]:
                self.best_met = val_met["Acc"]
                self.save(opt, sched)
                write_predictions(preds, self.paths.predictions_dir / f"val_preds_{self.uid}.pkl", self.world_size > 1)
            row = [self.num_epoch]
            for k in self.loss_fn.loss_keys:
                row += [trn_loss[k], val_loss[k]]
            for k in self.eval_fn.met_keys:
                row += [trn_met[k], val_met[k]]
            write_txt_log(self.paths, format_row(self.log_keys, row))
            LOG.info("epoch %d (%.0f s, %.0f CPU s): %s", self.num_epoch, time.time() - start,
                     time.process_time() - cpu_start, "  ".join(f"{k} {v:.4f}" for k, v in zip(self.log_keys[1:], row[1:])))
            if writer is not None:
                for k, v in zip(self.log_keys[1:], row[1:]):
                    writer.add_scalar(k, v, self.num_epoch)
                writer.add_scalar("lr", opt.param_groups[0]["lr"], self.num_epoch)
            self.history.append({"epoch": self.num_epoch, "val_Acc": val_met["Acc"], "trn_loss": trn_loss["loss"],
                                 "cpu_seconds": time.process_time() - cpu_start})
            if (deadline is not None and time.monotonic() > deadline) or \
                    (cpu_budget is not None and time.process_time() - cpu_start > cpu_budget):
                break
        write_txt_log(self.paths, f"epochs done {self.num_epoch}. Total time taken {time.time() - start: 0.4f}\n")
        if writer is not None:
            writer.close()
        return val_met

    def report_skipped(self) -> None:
        """--skip_corrupt: the count of samples left out, per split and in all (each was logged when skipped)."""
        total = 0
        for split, dataset in self.datasets.items():
            if dataset.skipped_rows:
                total += len(dataset.skipped_rows)
                rows = sorted(dataset.skipped_rows)
                LOG.warning("--skip_corrupt: %s: %d corrupt sample(s) of %s skipped, rows %s%s", split, len(rows),
                            dataset.csv_file, rows[:20], " ..." if len(rows) > 20 else "")
        LOG.warning("--skip_corrupt: %d corrupt sample(s) skipped in all (left out of training and of the metrics)",
                    total)

    def testing(self, loader, name: str) -> dict[str, float]:
        """Evaluate one split; log it and write predictions/UID/<name>_preds.pkl (dl0 = val, test0 = test)."""
        losses, metrics, preds = evaluate(self.net, self.loss_fn, self.eval_fn, loader, self.device,
                                          amp=self.cfg["use_amp"], desc=name)
        keys = ["epochs"] + [f"val_{k}" for k in self.loss_fn.loss_keys + self.eval_fn.met_keys]
        line = format_row(keys, [self.num_epoch] + [losses[k] for k in self.loss_fn.loss_keys]
                          + [metrics[k] for k in self.eval_fn.met_keys])
        write_txt_log(self.paths, "  ".join(keys) + "\n" + line)
        LOG.info("%s: %s", name, "  ".join(f"{k} {v:.4f}" for k, v in {**losses, **metrics}.items()))
        write_predictions(preds, self.paths.predictions_dir / f"{name}_preds.pkl", self.world_size > 1)
        return metrics


def main_dist(uid: str, overrides: dict[str, str], cfg_file: str | Path = DEFAULT_CFG) -> dict[str, dict[str, float]]:
    overrides = {k: v for k, v in overrides.items() if k not in IGNORED_LAUNCHER_FLAGS}
    cfg = merge_overrides(load_config(cfg_file), overrides)
    validate(cfg)
    validate_extras(cfg)
    run = Run(uid, cfg)
    try:
        run.resume()
        results = {}
        if not (cfg["only_val"] or cfg["only_test"]):
            results["valid"] = run.fit()
        else:
            if cfg["only_val"]:
                results["valid"] = run.testing(run.valid_dl, "dl0")
            if cfg["only_test"]:
                results["test"] = run.testing(run.test_dl, "test0")
        if cfg["skip_corrupt"]:
            run.report_skipped()
        barrier()
        return results
    finally:
        cleanup()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        cfg_file = next((a.split("=", 1)[1] for a in argv if a.startswith("--cfg_file=")), DEFAULT_CFG)
        print(f"{__doc__}\nKeys of {cfg_file} (--key=default):\n{describe_keys(cfg_file)}")
        return
    try:
        uid, overrides = parse_argv(argv)
        cfg_file = overrides.pop("cfg_file", DEFAULT_CFG)
        main_dist(uid, overrides, cfg_file)
    except GinError as exc:
        exit_with(exc)


if __name__ == "__main__":
    main()
