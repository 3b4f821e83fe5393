"""Model construction from the command-line options."""
from __future__ import annotations

import argparse

from .transformer import TransformerConfig, TransformerModel

__all__ = ["TransformerConfig", "TransformerModel", "config_from_opt", "setup"]


def config_from_opt(opt: argparse.Namespace) -> TransformerConfig:
    return TransformerConfig(
        vocab_size=opt.vocab_size, seq_length=opt.seq_length, num_layers=opt.num_layers,
        input_encoding_size=opt.input_encoding_size, ff_size=opt.ff_size, heads=opt.heads,
        img_feat_size=opt.img_feat_size, dropout=opt.dropout, use_grid=bool(opt.use_grid), num_grids=opt.num_grids,
        enc_pos_embedding=bool(opt.enc_pos_embedding), enc_pos_type=opt.enc_pos_type, cross_attn=opt.cross_attn,
        norm=opt.norm, ff_activation=opt.ff_activation)


def setup(opt: argparse.Namespace) -> TransformerModel:
    if opt.caption_model not in ("transformer", "spatial_pe"):
        # ShowAndTell needs models/CaptionModel2.py and ShowAttendTell its whole file: neither was published.
        raise SystemExit(f"--caption_model {opt.caption_model}: only 'transformer' and 'spatial_pe' exist in the "
                         "published code (show_tell / show_attend_tell files are missing upstream)")
    return TransformerModel(config_from_opt(opt))
