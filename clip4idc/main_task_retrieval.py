"""Stage 1, "IDC adaptation": contrastive image-pair <-> caption training of CLIP with pair fusion; eval = recall."""
from __future__ import annotations

import json
import logging
import os
import sys

import torch

from checkpoints import (MODEL_FILE, TrainingState, check_outputs_free, first_epoch, gather_random_states,
                         prepare_output_dir, restarted, resume, resume_state, save_epoch)
from dataloaders.data_dataloaders import DATALOADER_DICT, log_skipped
from engine import eval_retrieval, log_retrieval, prep_optimizer, train_one_epoch
from modules.build import build_model, build_tokenizer, freeze_clip
from params import parse_args
from errors import run_cli
from util import (compile_in_place, get_logger, init_distributed_mode, log_to_file, resolve_precision, save_atomic,
                  set_seed, wrap_ddp)

logger = logging.getLogger("clip4idc")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args("retrieval", argv)
    device = init_distributed_mode(args)
    args.precision = resolve_precision(args.precision, device)
    prepare_output_dir(args.output_dir)
    resume_path, resumed = resume_state(args) if args.do_train else (None, None)
    if args.do_train:
        check_outputs_free(args.output_dir, first_epoch(resumed), args.epochs, args.overwrite,
                           restarted(args) and not args.resume_model)
    get_logger()
    set_seed(args.seed)
    logger.info("Effective parameters: %s", json.dumps(vars(args), sort_keys=True))

    tokenizer = build_tokenizer(args)
    model = build_model(args, tokenizer, fp16=args.precision == "fp16").to(device)
    if args.compile:
        compile_in_place(model)
    frozen = freeze_clip(model, args.freeze_layer_num, args.datatype, "retrieval", args.linear_patch)
    logger.info("frozen CLIP parameters: %d tensors", len(frozen))
    test_loader, test_length = DATALOADER_DICT[args.datatype]["test"](args, tokenizer, "retrieval")
    summary: dict = {"epochs": []}
    loaders = [test_loader]

    if args.do_train:
        select_loader = (DATALOADER_DICT[args.datatype]["val"](args, tokenizer, "retrieval")[0]
                         if args.select_on == "val" else test_loader)
        train_loader, train_length, sampler = DATALOADER_DICT[args.datatype]["train"](args, tokenizer, "retrieval")
        loaders += [train_loader, select_loader]
        t_total = (len(train_loader) + args.gradient_accumulation_steps - 1) / args.gradient_accumulation_steps * args.epochs
        optimizer = prep_optimizer(model, "retrieval", args.lr, args.coef_lr, args.warmup_proportion, t_total,
                                   args.weight_decay)
        logger.info("***** Running training ***** examples %d, batch %d, steps %d", train_length, args.batch_size,
                    t_total * args.gradient_accumulation_steps)
        state = TrainingState(selection={"best": float("-inf"), "best_file": None})
        if resumed is not None:
            state = resume(resume_path, resumed, model, optimizer, train_loader.generator, args.rank)
        ddp_model = wrap_ddp(model, args)
        if args.rank == 0:
            log_to_file(os.path.join(args.output_dir, "log.txt"))
        for epoch in range(state.next_epoch, args.epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            loss, state.global_step = train_one_epoch(ddp_model, train_loader, optimizer, device, args, epoch,
                                                      state.global_step)
            rank_states = gather_random_states(train_loader.generator, args.world_size)
            if args.rank != 0:
                continue
            logger.info("Epoch %d/%s Finished, Train Loss: %f", epoch + 1, args.epochs, loss)
            path = os.path.join(args.output_dir, MODEL_FILE.format(epoch))
            save_atomic(model.state_dict(), path)
            logger.info("Model saved to %s", path)
            metrics = eval_retrieval(model, select_loader, device, args.precision)
            log_retrieval(metrics)
            r1 = metrics["text_to_pair"]["R1"]
            state.epochs.append({"epoch": epoch, "train_loss": loss, args.select_on: metrics})
            if state.selection["best"] <= r1:
                state.selection.update(best=r1, best_file=path)
            logger.info("The best model is: %s, the R1 is: %.4f", state.selection["best_file"], state.selection["best"])
            save_epoch(args.output_dir, epoch, optimizer, loss, state, train_loader.generator, args, rank_states)
        summary["epochs"], summary["best_model"] = state.epochs, state.selection["best_file"]
        if args.rank == 0 and args.select_on == "val" and summary["best_model"] is not None:
            model.load_state_dict(torch.load(summary["best_model"], map_location=device, weights_only=True))
    if args.rank == 0:
        log_to_file(os.path.join(args.output_dir, "log.txt"))
        logger.info("Test split (%d sentences):", test_length)
        summary["test"] = eval_retrieval(model, test_loader, device, args.precision)
        log_retrieval(summary["test"])
        save_atomic(summary, os.path.join(args.output_dir, "results.json"))
    if args.skip_corrupt:
        log_skipped(list({id(loader.dataset): loader for loader in loaders}.values()))
    return summary


if __name__ == "__main__":
    sys.exit(run_cli(main))
