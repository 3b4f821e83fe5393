"""Flags shared by the entry scripts, and turning them into a model, datasets and checkpoints."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pickle
import shutil

import torch

from data.features import GridFeatures, SegmentationFeatures
from data.text import CaptionTokenizer, build_vocab
from data.vocab import Vocab, load_vocab, save_vocab
from errors import DifnetError, ensure_writable_dir
from models import MODES, CaptioningModel, ModelConfig


CHECKPOINT_FIX = "pass one written by DIFNet's train.py or the released DIFNet_lrp.pth ('make difnet-data')"


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features_path", type=str, default="./dataset/coco_grid_feats2.hdf5")
    parser.add_argument("--pixel_path", type=str, default="./dataset/segmentations")
    parser.add_argument("--annotation_folder", type=str, default="./dataset/m2_annotations")
    parser.add_argument("--vocab_path", type=str, default="vocab.pkl",
                        help="vocabulary pickle (the original always uses ./vocab.pkl)")
    parser.add_argument("--skip_corrupt", action="store_true",
                        help="skip samples whose feature or segmentation file cannot be read (logged, and counted "
                             "at the end) instead of stopping")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", type=str, default="base", choices=MODES)
    # sizes the original hard-codes; the defaults are its values (toy runs use small ones)
    parser.add_argument("--d_model", type=int, default=512)
    parser.add_argument("--d_ff", type=int, default=2048)
    parser.add_argument("--head", type=int, default=8, help="attention heads (unused by the original, which uses 8)")
    parser.add_argument("--N_enc", type=int, default=3)
    parser.add_argument("--N_dec", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fused_attention", action="store_true",
                        help="torch's scaled_dot_product_attention (same function; faster on GPU)")
    parser.add_argument("--decode_cache", type=str, default="on", choices=("on", "off"),
                        help="beam search keeps projected keys/values, one position per step ('off': the original's "
                             "re-projection of the whole prefix at every step; same captions)")


def model_config(args: argparse.Namespace, vocab: Vocab) -> ModelConfig:
    return ModelConfig(mode=args.mode, vocab_size=len(vocab), padding_idx=vocab.stoi["<pad>"],
                       bos_idx=vocab.stoi["<bos>"], d_model=args.d_model, d_ff=args.d_ff, h=args.head,
                       n_enc=args.N_enc, n_dec=args.N_dec, dropout=args.dropout,
                       fused_attention=args.fused_attention)


def visual_inputs(args: argparse.Namespace) -> tuple[GridFeatures, SegmentationFeatures | None]:
    """The grid reader, and the segmentation reader for the difnet modes (the base modes never use it)."""
    seg = SegmentationFeatures(args.pixel_path) if args.mode.startswith("difnet") else None
    return GridFeatures(args.features_path), seg


def captions_digest(captions: list[str]) -> str:
    return hashlib.sha256("\n".join(captions).encode()).hexdigest()


def vocab_for_training(path: str, annotation_folder: str, train_and_val_captions: list[str],
                       tokenizer: CaptionTokenizer) -> Vocab:
    """Reuse ``path`` if present (as the original does with ./vocab.pkl), else build it (min_freq 5) and save it.

    A vocabulary built here records the annotation folder and a digest of the captions it was built from, and is
    refused for other captions (a vocabulary without the record, like the released one, is reused as it is).
    """
    digest = captions_digest(train_and_val_captions)
    if os.path.isfile(path):
        vocab = load_vocab(path)
        built_from = vocab.built_from
        if built_from is not None and built_from["captions_sha256"] != digest:
            raise DifnetError(
                f"{path} was built from the captions of {built_from['annotation_folder']}, not those of "
                f"--annotation_folder {os.path.abspath(annotation_folder)}: delete {path} to rebuild it, or pass "
                "--vocab_path of a vocabulary built for this data set")
        return vocab
    ensure_writable_dir(os.path.dirname(path) or ".", "--vocab_path")
    vocab = build_vocab((tokenizer(c) for c in train_and_val_captions), min_freq=5)
    vocab.built_from = {"annotation_folder": os.path.abspath(annotation_folder), "captions_sha256": digest}
    save_vocab(vocab, path)
    return vocab


def load_checkpoint(path: str) -> dict:
    """A checkpoint of ours or the authors' (they hold numpy RNG state, so weights_only=False: only load files
    you trust)."""
    if not os.path.isfile(path):
        raise DifnetError(f"checkpoint {path} not found (--model_path/--exp_name); train first or fetch the "
                          "released weights with 'make difnet-data'")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, ModuleNotFoundError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DifnetError(f"checkpoint {path} cannot be read ({first}): {CHECKPOINT_FIX}") from None
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise DifnetError(f"{path} is not a DIFNet checkpoint (no 'state_dict' entry): {CHECKPOINT_FIX}")
    return data


def load_weights(model: CaptioningModel, state_dict: dict, path: str, *, strict: bool = True) -> None:
    """Load ``state_dict`` into ``model``; a vocabulary or mode mismatch is reported in one line."""
    emb = state_dict.get("decoder.word_emb.weight")
    if emb is None:
        raise DifnetError(f"{path} holds no DIFNet weights (no 'decoder.word_emb.weight'): {CHECKPOINT_FIX}")
    if emb.shape[0] != model.cfg.vocab_size:
        raise DifnetError(f"{path} was trained with a vocabulary of {emb.shape[0]} tokens but the vocabulary "
                          f"has {model.cfg.vocab_size}: pass the vocab.pkl it was trained with (--vocab_path)")
    if emb.shape[1] != model.cfg.d_model:
        raise DifnetError(f"{path} has width {emb.shape[1]} but --d_model is {model.cfg.d_model}")
    try:
        model.load_state_dict(state_dict, strict=strict)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise DifnetError(f"{path} does not fit mode {model.cfg.mode!r} ({first}); pass the --mode it was "
                          "trained with (the released DIFNet_lrp.pth is --mode difnet_lrp)") from None


def config_dict(cfg: ModelConfig) -> dict:
    return dataclasses.asdict(cfg)


def save_checkpoint(obj: object, last_path: str, best_path: str | None = None) -> None:
    """Write ``last_path`` (and first ``best_path`` when given) atomically: a reader, or a run killed at any
    moment, finds either the previous file or the complete new one, and a new ``last`` implies its ``best``."""
    tmp = f"{last_path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    if best_path is not None:
        best_tmp = f"{best_path}.tmp{os.getpid()}"
        shutil.copyfile(tmp, best_tmp)
        os.replace(best_tmp, best_path)
    os.replace(tmp, last_path)
