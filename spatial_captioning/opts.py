"""Command-line options of train.py (names and defaults as in the original opts.py)."""
from __future__ import annotations

import argparse
import math
import sys


def str2bool(v: str) -> bool:
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError("Boolean value expected (1/0/true/false).")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the spatial transformer captioner (XE, then self-critical).")
    a = p.add_argument
    # Data input settings
    a("--input_json", type=str, default="/data/captioning_data/dataset_coco.json",
      help="cocotalk.json written by scripts/prepro_labels.py (vocabulary and image info)")
    a("--input_fc_feat_dir", type=str, default="data/cocobu_fc", help="directory of <id>.npy fc features")
    a("--input_img_feat_dir", type=str, default="data/cocobu_att", help="directory of <id>.npz region features")
    a("--input_box_dir", type=str, default="data/cocobu_box", help="directory of <id>.npy boxes (x1,y1,x2,y2)")
    a("--input_rel_box_dir", type=str, default="/data/cocobu_rel_box", help="relative boxes (ORT; unused here)")
    a("--input_grid_vec_dir", type=str, default="/data/cocobu_box_vec",
      help="directory of <id>.npy grid vectors (K, num_grids) written by prepro_areas.py")
    a("--input_label_h5", type=str, default="data/coco_label.h5", help="cocotalk_label.h5 from prepro_labels.py")
    a("--start_from", type=str, default=None,
      help="resume from this directory (model.pth, optimizer.pth, infos_<id>.pkl, histories_<id>.pkl)")
    a("--cached_tokens", type=str, default="coco-train-idxs",
      help="CIDEr-D document frequencies for SCST: data/<cached_tokens>.p (or a path to the .p file)")
    # Model settings
    a("--caption_model", type=str, default="transformer",
      choices=["transformer", "spatial_pe", "show_tell", "show_attend_tell"],
      help="spatial_pe (the README's name) = transformer with --use_grid 1")
    a("--ff_size", type=int, default=512, help="hidden size of the position-wise feed-forward network")
    a("--ff_activation", type=str, default="RELU", choices=["RELU", "GELU"])
    a("--norm", type=str, default="layer", choices=["layer", "RMS"])
    a("--num_layers", type=int, default=1, help="encoder and decoder layers")
    a("--rnn_type", type=str, default="lstm", help="RNN models only (not published)")
    a("--hidden_size", type=int, default=512, help="RNN models only (not published)")
    a("--num_grids", type=int, default=576, help="grid cells per box vector; a perfect square")
    a("--input_encoding_size", type=int, default=512, help="d_model: word and image embedding size")
    a("--img_feat_size", type=int, default=2048, help="region feature size")
    a("--heads", type=int, default=8)
    a("--dropout", type=float, default=0.5, help="used by every dropout layer")
    a("--use_grid", type=str2bool, default=False, help="add the grid spatial encoding (implied by spatial_pe)")
    a("--enc_pos_embedding", type=str2bool, default=True, help="learned spatial encoding (0: fixed sinusoids)")
    a("--enc_pos_type", type=str, default="gxg", choices=["gxg", "g2", "box-coord"])
    a("--use_box", type=str2bool, default=False, help="box features (exclusive with --use_grid; ORT model only)")
    a("--cross_attn", type=str, default="xlinear", choices=["xlinear", "dot-product"])
    # Feature manipulation
    a("--norm_img_feat", type=int, default=0, help="L2-normalise each region feature")
    a("--norm_box_feat", type=int, default=0)
    # Optimization: general
    a("--max_epochs", type=int, default=30)
    a("--batch_size", type=int, default=16, help="images per batch (x seq_per_img caption rows)")
    a("--grad_clip", type=float, default=0.1, help="clamp every gradient element to +-grad_clip")
    a("--self_critical_after", type=int, default=-1, help="epoch at which SCST starts (-1: never)")
    a("--seq_per_img", type=int, default=5)
    a("--beam_size", type=int, default=1, help="beam width for validation decoding")
    # Optimization: language model
    a("--optim", type=str, default="adam", choices=["rmsprop", "adagrad", "sgd", "sgdm", "sgdmom", "adam"])
    a("--learning_rate", type=float, default=4e-4)
    a("--learning_rate_decay_start", type=int, default=-1, help="epoch to start step decay (-1: never)")
    a("--learning_rate_decay_every", type=int, default=3)
    a("--learning_rate_decay_rate", type=float, default=0.8)
    a("--optim_alpha", type=float, default=0.9)
    a("--optim_beta", type=float, default=0.999)
    a("--optim_epsilon", type=float, default=1e-8)
    a("--weight_decay", type=float, default=0)
    # Scheduled sampling (the transformer ignores ss_prob, as in the original)
    a("--scheduled_sampling_start", type=int, default=-1)
    a("--scheduled_sampling_increase_every", type=int, default=5)
    a("--scheduled_sampling_increase_prob", type=float, default=0.05)
    a("--scheduled_sampling_max_prob", type=float, default=0.25)
    # Evaluation / checkpointing
    a("--val_images_use", type=int, default=3200, help="validation images (-1: all)")
    a("--save_checkpoint_every", type=int, default=100, help="iterations between checkpoints")
    a("--perform_validation_every", type=int, default=2500, help="iterations between validations")
    a("--checkpoint_path", type=str, default="save")
    a("--language_eval", type=int, default=0, help="1: BLEU/METEOR/ROUGE-L/CIDEr on validation (needs Java)")
    a("--losses_log_every", type=int, default=15)
    a("--load_best_score", type=int, default=1)
    # Misc
    a("--id", type=str, required=True, help="run id; names infos_<id>.pkl")
    a("--train_only", type=str2bool, default=False, help="1: 82k train images; 0: + restval (113k)")
    a("--device", type=str, default="cuda", choices=["cuda", "cpu"])
    # Reward
    a("--cider_reward_weight", type=float, default=1)
    a("--bleu_reward_weight", type=float, default=0)
    # Transformer
    a("--label_smoothing", type=float, default=0)
    a("--noamopt", action="store_true")
    a("--noamopt_warmup", type=int, default=20000)
    a("--noamopt_factor", type=float, default=1)
    a("--reduce_on_plateau", action="store_true")
    a("--box_trignometric_embedding", type=str2bool, default=True, help="unused (ORT leftover)")
    # Added here (not in the original)
    a("--seed", type=int, default=123, help="seeds torch/numpy/python and the data order")
    a("--num_workers", type=int, default=0, help="feature-loading worker processes")
    a("--skip_corrupt", type=int, default=0, help="1: skip images whose feature files are corrupt (each one logged, "
      "the count at the end) instead of stopping")
    a("--bf16", type=int, default=0, help="1: bfloat16 autocast on CUDA (ignored on CPU)")
    a("--tensorboard", type=int, default=1, help="write TensorBoard scalars to --checkpoint_path")
    a("--max_iters", type=int, default=-1, help="stop after this many iterations in total (-1: run max_epochs)")
    a("--ann_file", type=str, default="coco-caption/annotations/captions_val2014.json",
      help="COCO captions annotations used by --language_eval (the original's hard-coded path)")
    a("--meteor", type=int, default=1, help="compute METEOR in language evaluation (starts a JVM)")
    a("--spice", type=int, default=0, help="compute SPICE in language evaluation (needs Stanford CoreNLP)")
    a("--auto_resume", type=int, default=1, choices=[0, 1],
      help="1: when --checkpoint_path holds resume_<id>.pth of this --id, continue that run from it (model, "
           "optimizer, schedule, epoch and position in it, RNG states of every process, best score); this is what "
           "lets torchrun --max-restarts continue after a failure. 0: start afresh (its checkpoints are replaced)")
    a("--compile", type=int, default=0, choices=[0, 1],
      help="1: torch.compile the teacher-forced forward of the XE steps (measured slower on CPU, see README)")
    a("--decode_cache", type=int, default=1, choices=[0, 1],
      help="1: decode one position per step with cached keys/values (SCST sampling and validation); 0: re-decode "
           "the whole prefix at every step, as the original (same words, slower)")
    return p


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """The original's checks, as one-line errors; spatial_pe switches the grid encoding on."""
    def need(cond: bool, msg: str) -> None:
        if not cond:
            print(f"opts: {msg}", file=sys.stderr)
            raise SystemExit(2)  # a usage error, as argparse's own

    if args.caption_model == "spatial_pe":
        args.use_grid = True
    need(args.ff_size > 0, "--ff_size must be > 0")
    need(args.num_layers > 0, "--num_layers must be > 0")
    need(args.input_encoding_size > 0, "--input_encoding_size must be > 0")
    need(args.batch_size > 0, "--batch_size must be > 0")
    need(0 <= args.dropout < 1, "--dropout must be in [0, 1)")
    need(args.seq_per_img > 0, "--seq_per_img must be > 0")
    need(args.beam_size > 0, "--beam_size must be > 0")
    need(args.save_checkpoint_every > 0, "--save_checkpoint_every must be > 0")
    need(args.losses_log_every > 0, "--losses_log_every must be > 0")
    need(args.language_eval in (0, 1), "--language_eval must be 0 or 1")
    need(args.load_best_score in (0, 1), "--load_best_score must be 0 or 1")
    need(not (args.use_grid and args.use_box), "only one of --use_grid and --use_box may be 1")
    need(math.isqrt(args.num_grids) ** 2 == args.num_grids, f"--num_grids {args.num_grids} is not a perfect square")
    need(args.input_encoding_size % args.heads == 0, "--input_encoding_size must be divisible by --heads")
    if args.noamopt:
        need(args.caption_model in ("transformer", "spatial_pe"), "--noamopt only works with the transformer")
    return args


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    return validate(get_parser().parse_args(argv))
