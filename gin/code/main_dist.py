"""Train or evaluate GIN / ZSGNet (the original's entry script).

    python code/main_dist.py UID [--cfg_file=configs/cfg.yaml] --key=value ...
    torchrun --nproc_per_node=N code/main_dist.py UID ...          # DDP: gloo on CPU, nccl on GPU

Every key of configs/cfg.yaml can be overridden (typed, unknown keys rejected). Evaluation only:
``--resume=True --only_val=True --only_test=True [--resume_path=...]``. Outputs go under ``tmp_path``:
txt_logs/UID.txt, ext_logs/UID.txt, tb_logs/UID/, models/UID.pth (best val Acc), models/UID_last.pth (every epoch
end), predictions/UID/. The same training command run again (by hand, or by ``torchrun --max-restarts``) continues an
unfinished run from models/UID_last.pth (``--resume_last=False``: never).

The LSTM starts from a new random state on every forward (``--lstm_init=random``, the original's default, kept), so
two runs of the same evaluation give different boxes and accuracies; ``--lstm_init=zeros`` makes them repeatable and
gives the boxes predict.py gives (predict.py starts from zeros by default).
"""
from __future__ import annotations

import json
import logging
import os
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
from util.checkpoint import (atomic_write_bytes, load_model_state, read_checkpoint, save_checkpoint,
                              stale_temporaries)
from util.dist import all_gather_objects, barrier, cleanup, get_rank, init_distributed, is_main_process
from util.rng import rng_state, set_rng_state

LOG = logging.getLogger("gin")
IGNORED_LAUNCHER_FLAGS = ("local_rank",)  # torch.distributed.launch passes --local-rank/--local_rank; LOCAL_RANK wins
LAST_SUFFIX = "_last"


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
    def last_file(self) -> Path:
        """The resumable state written at every epoch end, beside the best-val-Acc ``model_file``."""
        return self.root / "models" / f"{self.uid}{LAST_SUFFIX}.pth"

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
        for f in (self.txt_log, self.ext_log, self.model_file, self.last_file):
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

        self.continued = self.run_to_continue()
        if self.continued is not None:
            self.resume_from, self.checkpoint = self.paths.last_file, self.continued
        else:
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
        replaced = self.resume_from is not None and (cfg["strict_load"] or self.continued is not None)
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

    def run_to_continue(self) -> dict[str, Any] | None:
        """The state in UID_last.pth when this training command continues the run that wrote it: same settings and
        unfinished, or finished when torchrun restarted a worker (the restart then trains nothing more). Else None:
        the run starts as the original's did (from UID.pth or --resume_path when --resume)."""
        if self.cfg["only_val"] or self.cfg["only_test"]:
            return None
        elastic_restart = any(all_gather_objects(int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0))
        self.refuse_other_runs_files()
        last = self.paths.last_file
        fix = "it holds this run's resumable state: move it away to start the run anew"
        state = read_checkpoint(last, fix) if last.is_file() else None
        if state is not None and state.get("last_of") != self.uid:
            raise CheckpointError(f"{last} is not run {self.uid}'s resumable state but the best checkpoint of run "
                                  f"{last.stem!r}, which this run would overwrite; choose another UID or --tmp_path")
        continued = state if state is not None and self.continues(state, elastic_restart) else None
        views = all_gather_objects(None if continued is None else int(continued["num_epoch"]))
        if len(set(views)) > 1:
            raise CheckpointError(f"the processes see different states in {last} (epochs done, per rank: {views}); "
                                  f"--tmp_path must be one folder shared by every node (only rank 0 writes it)")
        return continued

    def refuse_other_runs_files(self) -> None:
        """Stop before overwriting another run's resumable state (run 'a' keeps a_last.pth, the best-checkpoint name
        of run 'a_last'); remove the temporaries a killed checkpoint writer left."""
        best = self.paths.model_file
        if self.uid.endswith(LAST_SUFFIX) and best.is_file() and "last_of" in read_checkpoint(best):
            raise CheckpointError(f"{best} is the resumable state of run {self.uid[:-len(LAST_SUFFIX)]!r}, which this "
                                  f"run would overwrite with its best checkpoint; choose another UID or --tmp_path")
        if is_main_process():
            for tmp in stale_temporaries(best) + stale_temporaries(self.paths.last_file):
                LOG.warning("removing %s, a checkpoint left half-written by a killed run", tmp)
                tmp.unlink(missing_ok=True)

    def continues(self, state: dict[str, Any], elastic_restart: bool) -> bool:
        last, end, done = self.paths.last_file, int(state["end_epoch"]), int(state["num_epoch"])
        if not self.cfg["resume_last"]:
            LOG.info("--resume_last=False: %s is not continued; this run replaces it at its first epoch end", last)
            return False
        before, now = json.loads(state["cfgtxt"]), json.loads(json.dumps(self.cfg))
        changed = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        if changed:
            LOG.warning("%s holds a run of %s with other settings (%s); it is not continued, and this run replaces it "
                        "at its first epoch end", last, self.uid, ", ".join(changed))
            return False
        if done < end:
            LOG.info("resuming from %s: %d of %d epochs done, best val Acc %.4f", last, done, end, state["best_met"])
            return True
        if elastic_restart:
            LOG.info("%s: all %d epochs were done before torchrun restarted the workers; nothing left to train", last,
                     end)
            return True
        LOG.info("%s: the run with these settings finished (%d epochs); this one starts as the original does", last,
                 done)
        return False

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
        load_model_state(self.model, self.checkpoint, path, strict=self.cfg["strict_load"] or self.continued is not None)
        self.num_it = int(self.checkpoint.get("num_it", 0))
        self.num_epoch = int(self.checkpoint.get("num_epoch", 0))
        self.best_met = float(self.checkpoint.get("best_met", 0.0))
        if self.continued is not None:
            self.history = list(self.continued["history"])
        LOG.info("loaded model from %s (epoch %d, best val Acc %.4f)", path, self.num_epoch, self.best_met)

    def make_optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg["lr"], betas=(0.9, 0.99))
        if self.cfg["use_reduce_lr_plateau"]:
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=self.cfg["sched_mode"], factor=self.cfg["reduce_factor"], patience=self.cfg["patience"])
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1)
        if (self.cfg["load_opt"] or self.continued is not None) and self.checkpoint is not None:
            opt.load_state_dict(self.checkpoint["optimizer_state_dict"])
            if "scheduler_state_dict" in self.checkpoint:
                sched.load_state_dict(self.checkpoint["scheduler_state_dict"])
        return opt, sched

    def save(self, opt, sched) -> None:
        if is_main_process():
            save_checkpoint(self.paths.model_file, self.model, optimizer_state_dict=opt.state_dict(),
                            scheduler_state_dict=sched.state_dict(), num_it=self.num_it, num_epoch=self.num_epoch,
                            cfgtxt=json.dumps(self.cfg), best_met=self.best_met)

    def save_last(self, opt, sched, end_epoch: int) -> None:
        """UID_last.pth: what a restarted run needs to go on exactly as this one would (every rank's random state);
        written by rank 0 only."""
        rng_states = all_gather_objects(rng_state())
        if is_main_process():
            save_checkpoint(self.paths.last_file, self.model, optimizer_state_dict=opt.state_dict(),
                            scheduler_state_dict=sched.state_dict(), num_it=self.num_it, num_epoch=self.num_epoch,
                            cfgtxt=json.dumps(self.cfg), best_met=self.best_met, last_of=self.uid,
                            end_epoch=end_epoch, rng_states=rng_states, history=self.history)

    def restore_rng(self, rng_states: list[dict[str, Any]]) -> None:
        if len(rng_states) == self.world_size:
            set_rng_state(rng_states[self.rank])
        else:
            LOG.warning("%s was written by %d processes, this run has %d: random streams restart from the seed, so "
                        "the run goes on but will not repeat an uninterrupted one exactly", self.paths.last_file,
                        len(rng_states), self.world_size)

    def fit(self, deadline: float | None = None, cpu_budget: float | None = None) -> dict[str, float]:
        """``epochs`` more epochs, or the rest of a continued run (fewer when, after an epoch, ``time.monotonic()``
        passed ``deadline`` or the process used ``cpu_budget`` CPU seconds in this call); the best-val-Acc model is
        saved with its val predictions, and every epoch's end in UID_last.pth."""
        from torch.utils.tensorboard import SummaryWriter

        opt, sched = self.make_optimizer()
        writer = SummaryWriter(str(self.paths.tb_dir)) if is_main_process() else None
        end_epoch = self.num_epoch + self.cfg["epochs"]
        if self.continued is not None:
            end_epoch = int(self.continued["end_epoch"])
            self.restore_rng(self.continued["rng_states"])
        start, cpu_start, val_met = time.time(), time.process_time(), {}
        while self.num_epoch < end_epoch:
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
            out_of_time = (deadline is not None and time.monotonic() > deadline) or \
                (cpu_budget is not None and time.process_time() - cpu_start > cpu_budget)
            self.save_last(opt, sched, end_epoch=self.num_epoch if out_of_time else end_epoch)
            if out_of_time:
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
