"""Stage 2, "IDC finetuning": caption decoder on the adapted visual tower; eval = greedy captions scored with
BLEU/METEOR/ROUGE-L/CIDEr against gt/<datatype>_total_change_captions_reformat.json."""
from __future__ import annotations

import json
import logging
import os
import sys

import torch
import torch.distributed as dist

from caption_eval import load_gt, score_parts
from checkpoints import (MODEL_FILE, TrainingState, check_outputs_free, first_epoch, gather_random_states,
                         prepare_output_dir, restarted, resume, resume_state, save_epoch)
from dataloaders.data_dataloaders import DATALOADER_DICT, log_skipped
from engine import caption_cross_entropy, generate_captions, prep_optimizer, train_one_epoch
from errors import run_cli
from modules.build import build_model, build_tokenizer, freeze_clip
from params import parse_args
from util import (compile_in_place, get_logger, init_distributed_mode, log_to_file, resolve_precision, save_atomic,
                  set_seed, wrap_ddp)

logger = logging.getLogger("clip4idc")


def split_references(dataset) -> dict[str, list[str]]:
    """Ground truth of a split straight from its loader (for model selection on val, which has no gt/ file)."""
    gts = {dataset.pair_name(i): sentences for i, (_, sentences) in enumerate(dataset.pairs)}
    if hasattr(dataset, "no_change"):
        gts.update({dataset.pair_name(i) + "_n": dataset.no_change[name] for i, (name, _) in enumerate(dataset.pairs)})
    return gts


def evaluate(model, loader, gts, tokenizer, device, args, tag, draw: bool = False) -> dict:
    """Greedy captions -> hyp_ep_<tag>.json (atomic) -> scores (total, and sc/nsc parts)."""
    results = generate_captions(model, loader, tokenizer, device, args.precision, args.max_words, args.datatype,
                                use_cache=not args.no_decode_cache)
    save_atomic(results, os.path.join(args.output_dir, f"hyp_ep_{tag}.json"))
    scores = score_parts(gts, results, meteor=not args.no_meteor)
    for part, s in scores.items():
        logger.info(">>>  [%s] BLEU_1: %.4f, BLEU_2: %.4f, BLEU_3: %.4f, BLEU_4: %.4f", part, s["Bleu_1"], s["Bleu_2"],
                    s["Bleu_3"], s["Bleu_4"])
        logger.info(">>>  [%s] METEOR: %.4f, ROUGE_L: %.4f, CIDEr: %.4f", part, s.get("METEOR", float("nan")),
                    s["ROUGE_L"], s["CIDEr"])
    if draw and args.save_vis:
        from visualize import save_pair_figures

        save_pair_figures(loader.dataset, results, gts, args.save_vis, args.vis_num)
    return scores


def main(argv: list[str] | None = None) -> dict:
    args = parse_args("caption", argv)
    device = init_distributed_mode(args)
    args.precision = resolve_precision(args.precision, device)
    prepare_output_dir(args.output_dir)
    resume_path, resumed = resume_state(args) if args.do_train else (None, None)
    if args.do_train:
        check_outputs_free(args.output_dir, first_epoch(resumed), args.epochs, args.overwrite,
                           restarted(args) and not args.resume_model)
    get_logger()
    set_seed(args.seed)  # the original seeded CLEVR only; Spot is seeded too here
    logger.info("Effective parameters: %s", json.dumps(vars(args), sort_keys=True))

    tokenizer = build_tokenizer(args)
    model = build_model(args, tokenizer, fp16=args.precision == "fp16").to(device)
    if args.compile:
        compile_in_place(model)
    frozen = freeze_clip(model, args.freeze_layer_num, args.datatype, "caption", args.linear_patch)
    logger.info("frozen CLIP parameters: %d tensors", len(frozen))
    test_loader, test_length = DATALOADER_DICT[args.datatype]["test"](args, tokenizer, "caption")
    test_gts = load_gt(os.path.join(args.gt_dir, f"{args.datatype}_total_change_captions_reformat.json"))
    summary: dict = {"epochs": []}
    loaders = [test_loader]

    if args.do_train:
        if args.select_on == "val":
            select_loader = DATALOADER_DICT[args.datatype]["val"](args, tokenizer, "caption")[0]
            select_gts = split_references(select_loader.dataset)
        else:
            select_loader, select_gts = test_loader, test_gts
        train_loader, train_length, sampler = DATALOADER_DICT[args.datatype]["train"](args, tokenizer, "caption")
        loaders += [train_loader, select_loader]
        t_total = (len(train_loader) + args.gradient_accumulation_steps - 1) / args.gradient_accumulation_steps * args.epochs
        optimizer = prep_optimizer(model, "caption", args.lr, args.coef_lr, args.warmup_proportion, t_total,
                                   args.weight_decay)
        logger.info("***** Running training ***** examples %d, batch %d, steps %d", train_length, args.batch_size,
                    t_total * args.gradient_accumulation_steps)
        state = TrainingState(selection={"best": 0.00001, "best_file": None, "since_best": 0})
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
            stop = [False]
            if args.rank == 0:
                logger.info("Epoch %d/%s Finished, Train Loss: %f", epoch + 1, args.epochs, loss)
                path = os.path.join(args.output_dir, MODEL_FILE.format(epoch))
                save_atomic(model.state_dict(), path)
                logger.info("Model saved to %s", path)
                scores = evaluate(model, select_loader, select_gts, tokenizer, device, args, epoch)
                state.epochs.append({"epoch": epoch, "train_loss": loss, args.select_on: scores})
                selection = state.selection
                selection["since_best"] += 1
                if selection["best"] <= scores["total"]["CIDEr"]:
                    selection.update(best=scores["total"]["CIDEr"], best_file=path, since_best=0)
                logger.info("The best model is: %s, the CIDEr is: %.4f", selection["best_file"], selection["best"])
                save_epoch(args.output_dir, epoch, optimizer, loss, state, train_loader.generator, args, rank_states)
                stop = [selection["since_best"] > args.early_stop]
            if args.world_size > 1:  # every rank must leave the loop together
                dist.broadcast_object_list(stop, src=0)
            if stop[0]:
                break
        summary["epochs"], summary["best_model"] = state.epochs, state.selection["best_file"]
        if args.rank == 0 and args.select_on == "val" and summary["best_model"] is not None:
            model.load_state_dict(torch.load(summary["best_model"], map_location=device, weights_only=True))
    if args.rank == 0:
        log_to_file(os.path.join(args.output_dir, "log.txt"))
        logger.info("Test split (%d pairs):", test_length)
        summary["test"] = evaluate(model, test_loader, test_gts, tokenizer, device, args,
                                   "test" if args.do_train else "eval", draw=True)
        summary["token_ce"] = caption_cross_entropy(model, test_loader, device, args.datatype)
        logger.info("teacher-forced token cross-entropy of the test change captions: %.4f", summary["token_ce"])
        save_atomic(summary, os.path.join(args.output_dir, "results.json"))
    if args.skip_corrupt:
        log_skipped(list({id(loader.dataset): loader for loader in loaders}.values()))
    return summary


if __name__ == "__main__":
    sys.exit(run_cli(main))
