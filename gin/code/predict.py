"""Ground one expression in one image and save the image with the predicted box drawn (PNG).

    python code/predict.py IMAGE "EXPRESSION" --resume_path=MODEL.pth --out=pred.png [--cfg_file=...] [--key=value ...]

The config (and its width keys) must be those the checkpoint was trained with; every key of the config can be
overridden as in main_dist.py (``main_dist.py --help`` lists them).

Unlike main_dist.py, the LSTM starts from zeros here (``--lstm_init=zeros`` by default), so the same input always
gives the same box. main_dist.py keeps the original's ``--lstm_init=random`` (a new random state on every forward, so
its boxes move between runs); run it with ``--lstm_init=zeros`` to get the boxes this script gives, or pass
``--lstm_init=random`` here for the original's behaviour. (This script is not in the original, so it has no original
default to keep.)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from config import DEFAULT_CFG, anchor_ratios_scales, load_config, merge_overrides, validate, validate_extras
from data import load_word_vectors
from data.loader import FILTERS, open_image
from errors import ConfigError, DataError, GinError, exit_with
from models import build_model
from models.evaluator import Evaluator
from util.checkpoint import atomic_write_bytes, load_checkpoint


def predict(image_path: Path, expression: str, cfg: dict) -> tuple[list[float], float]:
    """(x1, y1, x2, y2) pixel box of the best anchor and its score."""
    img = open_image(image_path, "", skippable=False)
    if not cfg["resume_path"]:
        raise ConfigError("--resume_path=MODEL.pth is required (a trained GIN/ZSGNet checkpoint)")
    ratios, scales = anchor_ratios_scales(cfg)
    model = build_model(cfg, len(ratios) * len(scales), load_pretrained=False)
    load_checkpoint(Path(cfg["resume_path"]), model, strict=cfg["strict_load"])
    model.eval()
    words = load_word_vectors(cfg["word_vectors"], cfg["emb_dim"])
    tokens = words.tokens(expression.replace("_", " ").strip())
    if not tokens:
        raise DataError("the expression is empty")
    w, h = img.size
    size = cfg["resize_img"][0]
    pixels = np.asarray(img.resize((size, size), FILTERS[cfg["resize_filter"]]), dtype=np.float32) / 255
    batch = {"img": torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None],
             "qvec": torch.from_numpy(words.vectors(tokens[: cfg["phrase_len"]]))[None],
             "qlens": torch.tensor([float(min(len(tokens), cfg["phrase_len"]))]),
             "annot": torch.zeros(1, 4), "idxs": torch.zeros(1), "img_size": torch.tensor([[float(h), float(w)]])}
    with torch.no_grad():
        out = Evaluator(ratios, scales)(model(batch), batch)
    return out["pred_boxes"][0].tolist(), float(out["pred_scores"][0])


def save_png(img: Image.Image, out: Path) -> None:
    try:
        atomic_write_bytes(out, lambda f: img.save(f, format="PNG"))
    except OSError as exc:
        raise DataError(f"--out={out}: cannot write the image ({exc.strerror or exc}); choose another --out") from None


def predict_config(flags: dict[str, str]) -> dict:
    """The config of ``--cfg_file`` with ``--key=value`` flags applied; the LSTM state defaults to zeros here."""
    flags = dict(flags)
    cfg_file = flags.pop("cfg_file", DEFAULT_CFG)
    cfg = merge_overrides(load_config(cfg_file), {"lstm_init": "zeros", **flags})
    validate(cfg)
    validate_extras(cfg)
    return cfg


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return
    try:
        positional = [a for a in argv if not a.startswith("--")]
        flags = dict(a[2:].partition("=")[::2] for a in argv if a.startswith("--"))
        if len(positional) != 2:
            raise ConfigError('usage: predict.py IMAGE "EXPRESSION" --resume_path=MODEL.pth --out=pred.png [--key=value]')
        out = Path(flags.pop("out", "pred.png"))
        cfg = predict_config(flags)
        box, score = predict(Path(positional[0]), positional[1], cfg)
        img = open_image(Path(positional[0]), "", skippable=False)
        draw = ImageDraw.Draw(img)
        draw.rectangle(box, outline=(255, 0, 0), width=max(2, round(min(img.size) / 100)))
        draw.text((box[0] + 3, box[1] + 2), f"{positional[1]} ({score:.2f})", fill=(255, 0, 0))
        save_png(img, out)
    except GinError as exc:
        exit_with(exc)
    print(f"box {[round(v, 1) for v in box]} score {score:.3f} -> {out}")


if __name__ == "__main__":
    main()
