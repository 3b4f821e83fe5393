"""Stage 1, "IDC adaptation": contrastive image-pair <-> caption training of CLIP with pair fusion; eval = recall."""
from __future__ import annotations

import json
import logging
import os
import sys

import torch

from dataloaders.data_dataloaders import DATALOADER_DICT
from engine import eval_retrieval, log_retrieval, prep_optimizer, train_one_epoch
from modules.build import build_model, build_tokenizer, freeze_clip
from params import parse_args
from util import get_logger, init_distributed_mode, resolve_precision, save_atomic, set_seed, wrap_ddp
from errors import run_cli

logger = logging.getLogger("clip4idc")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args("retrieval", argv)
    device = init_distributed_mode(args)
    os.makedirs(args.output_dir, exist_ok=True)
    get_logger(os.path.join(args.output_dir, "log.txt") if args.rank == 0 else None)
    set_seed(args.seed)
    args.precision = resolve_precision(args.precision, device)
    logger.info("Effective parameters: %s", json.dumps(vars(args), sort_keys=True))

    tokenizer = build_tokenizer(args)
    model = build_model(args, tokenizer, fp16=args.precision == "fp16").to(device)
    frozen = freeze_clip(model, args.freeze_layer_num, args.datatype, "retrieval", args.linear_patch)
    logger.info("frozen CLIP parameters: %d tensors", len(frozen))
    test_loader, test_length = DATALOADER_DICT[args.datatype]["test"](args, tokenizer, "retrieval")
    summary: dict = {"epochs": []}

    if args.do_train:
        select_loader = (DATALOADER_DICT[args.datatype]["val"](args, tokenizer, "retrieval")[0]
                         if args.select_on == "val" else test_loader)
        train_loader, train_length, sampler = DATALOADER_DICT[args.datatype]["train"](args, tokenizer, "retrieval")
        t_total = (len(train_loader) + args.gradient_accumulation_steps - 1) / args.gradient_accumulation_steps * args.epochs
        optimizer = prep_optimizer(model, "retrieval", args.lr, args.coef_lr, args.warmup_proportion, t_total,
                                   args.weight_decay)
        ddp_model = wrap_ddp(model, args)
        logger.info("***** Running training ***** examples %d, batch %d, steps %d", train_length, args.batch_size,
                    t_total * args.gradient_accumulation_steps)
        best, best_file, global_step = float("-inf"), None, 0
        for epoch in range(args.epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            loss, global_step = train_one_epoch(ddp_model, train_loader, optimizer, device, args, epoch, global_step)
            if args.rank != 0:
                continue
            logger.info("Epoch %d/%s Finished, Train Loss: %f", epoch + 1, args.epochs, loss)
            path = os.path.join(args.output_dir, f"pytorch_model.bin.{epoch}")
            save_atomic(model.state_dict(), path)
            logger.info("Model saved to %s", path)
            metrics = eval_retrieval(model, select_loader, device, args.precision)
            log_retrieval(metrics)
            r1 = metrics["text_to_pair"]["R1"]
            summary["epochs"].append({"epoch": epoch, "train_loss": loss, args.select_on: metrics})
            if best <= r1:
                best, best_file = r1, path
            logger.info("The best model is: %s, the R1 is: %.4f", best_file, best)
        summary["best_model"] = best_file
        if args.rank == 0 and args.select_on == "val":
            model.load_state_dict(torch.load(best_file, map_location=device, weights_only=True))
    if args.rank == 0:
        logger.info("Test split (%d sentences):", test_length)
        summary["test"] = eval_retrieval(model, test_loader, device, args.precision)
        log_retrieval(summary["test"])
        save_atomic(summary, os.path.join(args.output_dir, "results.json"))
    return summary


if __name__ == "__main__":
    sys.exit(run_cli(main))
