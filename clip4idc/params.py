"""Command-line flags of main_task_retrieval.py and main_task_caption.py (the original's 46 plus ours, marked)."""
from __future__ import annotations

import argparse


def get_args_parser(task_type: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=f"CLIP4IDC {task_type}")
    parser.add_argument("--do_pretrain", action="store_true", help="unused (kept from the original)")
    parser.add_argument("--do_train", action="store_true", help="train, saving and evaluating every epoch")
    parser.add_argument("--do_eval", action="store_true", help="evaluate --init_model on the test split")
    parser.add_argument("--data_path", type=str, default="data/datatype",
                        help="CLEVR: .../clevr_change/data; Spot: the folder with reformat_*.json")
    parser.add_argument("--features_path", type=str, default="data/datatype/images",
                        help="Spot: the images folder (unused for CLEVR)")
    parser.add_argument("--num_thread_reader", type=int, default=1, help="DataLoader workers")
    parser.add_argument("--lr", type=float, default=0.0001, help="initial learning rate")
    parser.add_argument("--epochs", type=int, default=20, help="upper epoch limit")
    parser.add_argument("--batch_size", type=int, default=256, help="global training batch size")
    parser.add_argument("--batch_size_val", type=int, default=3500, help="evaluation batch size")
    parser.add_argument("--lr_decay", type=float, default=0.9, help="unused")
    parser.add_argument("--n_display", type=int, default=100, help="log every n optimizer steps")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument("--max_words", type=int, default=20, help="text length (README uses 32)")
    parser.add_argument("--margin", type=float, default=0.1, help="unused")
    parser.add_argument("--hard_negative_rate", type=float, default=0.5, help="unused")
    parser.add_argument("--negative_weighting", type=int, default=1, help="unused")
    parser.add_argument("--n_pair", type=int, default=1, help="unused")
    parser.add_argument("--output_dir", type=str, required=True, help="checkpoints, log.txt, hyp_ep_*.json")
    parser.add_argument("--cross_model", type=str, default="cross-base", help="unused (no cross module is built)")
    parser.add_argument("--decoder_model", type=str, default="decoder-base",
                        help="folder in modules/ (or any folder) holding decoder_config.json")
    parser.add_argument("--init_model", type=str, default=None, help="checkpoint to start from (stage 2: stage-1 output)")
    parser.add_argument("--resume_model", type=str, default=None,
                        help="continue training from <output_dir>/pytorch_opt.bin.<epoch> (optimizer, epoch; the model "
                             "from the pytorch_model.bin.<epoch> beside it) at the next epoch")
    parser.add_argument("--do_lower_case", action="store_true", help="unused (CLIP BPE always lower-cases)")
    parser.add_argument("--warmup_proportion", type=float, default=0.1, help="fraction of steps for linear warm-up")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1,
                        help="accumulate this many batches per update (batch_size is divided by it)")
    parser.add_argument("--n_gpu", type=int, default=1, help="overwritten at run time")
    parser.add_argument("--cache_dir", type=str, default="", help="unused")
    parser.add_argument("--fp16", action="store_true", help="unused by the original; see --precision")
    parser.add_argument("--fp16_opt_level", type=str, default="O1", help="unused")
    parser.add_argument("--task_type", type=str, default=task_type, help=f"must be {task_type} for this script")
    parser.add_argument("--datatype", type=str, default="msrvtt", help="clevr or spot")
    parser.add_argument("--world_size", type=int, default=0, help="overwritten at run time")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0,
                        help="set by the launcher (torch.distributed.launch or torchrun)")
    parser.add_argument("--rank", type=int, default=0, help="overwritten at run time")
    parser.add_argument("--coef_lr", type=float, default=1.0, help="lr multiplier of the CLIP parameters")
    parser.add_argument("--use_mil", action="store_true", help="unused")
    parser.add_argument("--sampled_use_mil", action="store_true", help="unused")
    parser.add_argument("--text_num_hidden_layers", type=int, default=12, help="unused")
    parser.add_argument("--visual_num_hidden_layers", type=int, default=12, help="unused")
    parser.add_argument("--intra_num_hidden_layers", type=int, default=9,
                        help="visual blocks run per image before the pair is fused")
    parser.add_argument("--cross_num_hidden_layers", type=int, default=2, help="unused")
    parser.add_argument("--freeze_layer_num", type=int, default=0,
                        help="freeze CLIP blocks below this index and the embeddings (-1: freeze nothing)")
    parser.add_argument("--linear_patch", type=str, default="2d", choices=["2d", "3d"], help="patch embedding")
    parser.add_argument("--pretrained_clip_name", type=str, default="ViT-B/32", help="CLIP version")
    if task_type == "caption":
        parser.add_argument("--gt_dir", type=str, default="gt",
                            help="folder with <datatype>_total_change_captions_reformat.json")
    else:
        parser.add_argument("--feature_framerate", type=int, default=1, help="unused")

    ours = parser.add_argument_group("vlrepro additions")
    ours.add_argument("--pretrained_clip_path", type=str, default=None,
                      help="CLIP archive (JIT or state dict); default modules/ViT-B-32.pt")
    ours.add_argument("--clip_random_init", action="store_true",
                      help="build a randomly initialised CLIP from the --clip_* sizes instead of loading an archive")
    ours.add_argument("--clip_embed_dim", type=int, default=512)
    ours.add_argument("--clip_vision_width", type=int, default=768)
    ours.add_argument("--clip_vision_layers", type=int, default=12)
    ours.add_argument("--clip_patch_size", type=int, default=32)
    ours.add_argument("--clip_text_width", type=int, default=512)
    ours.add_argument("--clip_text_layers", type=int, default=12)
    ours.add_argument("--image_resolution", type=int, default=224, help="images are resized to this square")
    ours.add_argument("--compact_vocab", action="store_true",
                      help="re-index the BPE vocabulary to the tokens the dataset's captions use (small models)")
    ours.add_argument("--cache_images", action="store_true", help="keep decoded image tensors in memory")
    ours.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"], default="auto",
                      help="auto = fp16 CLIP weights on CUDA (the original), fp32 on CPU; bf16 = autocast, fp32 weights")
    ours.add_argument("--select_on", choices=["val", "test"], default="val",
                      help="split for model selection (the original used test)")
    ours.add_argument("--weight_decay", type=float, default=None,
                      help="BertAdam weight decay; default the original's hard-coded 0.2 (retrieval) / 0.01 (caption)")
    ours.add_argument("--skip_corrupt", action="store_true",
                      help="leave out pairs with an unreadable image (each logged, and the count at the end) instead "
                           "of stopping; every image of a split is decoded once up front")
    ours.add_argument("--auto_resume", action="store_true",
                      help="continue from the last finished epoch in --output_dir (written by this same command) "
                           "instead of refusing its checkpoints; implied under torchrun after a restart "
                           "(--max-restarts)")
    ours.add_argument("--overwrite", action="store_true",
                      help="replace checkpoints an earlier run left in --output_dir (refused otherwise)")
    ours.add_argument("--compile", action="store_true",
                      help="torch.compile the vision tower and (caption) the decoder in place; checkpoints keep "
                           "their keys. Opt-in: see README for the measured effect")
    ours.add_argument("--save_vis", type=str, default=None, help="caption: write before|after|captions figures here")
    ours.add_argument("--vis_num", type=int, default=8, help="pairs drawn by --save_vis")
    if task_type == "caption":
        ours.add_argument("--no_meteor", action="store_true", help="skip METEOR (no Java start)")
        ours.add_argument("--early_stop", type=int, default=10, help="stop after this many epochs without gain")
        ours.add_argument("--no_change_weight", type=float, default=1.0,
                          help="CLEVR: weight of the distractor pairs' no-change caption loss against the changed "
                               "pairs' (default 1, the original's plain sum)")
        ours.add_argument("--no_decode_cache", action="store_true",
                          help="greedy decoding re-runs the decoder on the whole prefix at every step, as the original "
                               "(same captions; default: cached keys/values, one position per step)")
    return parser


def parse_args(task_type: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = get_args_parser(task_type)
    args = parser.parse_args(argv)
    if args.gradient_accumulation_steps < 1:
        parser.error(f"--gradient_accumulation_steps must be >= 1, got {args.gradient_accumulation_steps}")
    if not args.do_train and not args.do_eval:
        parser.error("one of --do_train or --do_eval is required")
    if args.task_type != task_type:
        parser.error(f"--task_type must be {task_type} for this script, got {args.task_type}")
    if args.datatype not in ("clevr", "spot"):
        parser.error(f"--datatype must be clevr or spot, got {args.datatype!r}")
    if not -1 <= args.freeze_layer_num <= 12:
        parser.error(f"--freeze_layer_num must be in -1..12, got {args.freeze_layer_num}")
    if args.resume_model and not args.do_train:
        parser.error("--resume_model continues training: pass --do_train")
    args.batch_size = int(args.batch_size / args.gradient_accumulation_steps)
    return args
