"""Validation / test evaluation: loss, decoding, predictions, and language metrics through shared_eval."""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from collections import defaultdict

import torch

from dataloader import DataError
from misc.scorers import evaluate_with_images

log = logging.getLogger(__name__)
DEFAULT_ANN_FILE = "coco-caption/annotations/captions_val2014.json"


def decode_sequence(ix_to_word: dict[str, str], seq: torch.Tensor) -> list[str]:
    """Index rows -> strings, stopping at the first 0."""
    out = []
    for row in seq.tolist():
        words = []
        for ix in row:
            if ix == 0:
                break
            words.append(ix_to_word[str(ix)])
        out.append(" ".join(words))
    return out


def load_references(ann_file: str) -> dict[int, list[str]]:
    """Raw reference captions per image id from a COCO captions annotation file."""
    if not os.path.isfile(ann_file):
        raise FileNotFoundError(f"--ann_file {ann_file} not found: language evaluation needs the COCO captions "
                                "annotations (coco-caption/annotations/captions_val2014.json, see README)")
    try:
        with open(ann_file) as f:
            data = json.load(f)
        refs: dict[int, list[str]] = defaultdict(list)
        for ann in data["annotations"]:
            refs[ann["image_id"]].append(ann["caption"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"--ann_file {ann_file} is not a COCO captions annotation file ({err!r}): pass "
                        "coco-caption/annotations/captions_val2014.json") from None
    return refs


def dump_image(src: str, image_id) -> None:
    """Copy an evaluated image to vis/imgs/<id>.jpg (the original's --dump_images); a missing file is skipped with a
    warning (the original's shell `cp` printed an error and went on)."""
    if not os.path.isfile(src):
        log.warning("--dump_images: %s not found (set --image_root); not copied", src)
        return
    os.makedirs("vis/imgs", exist_ok=True)
    shutil.copy(src, os.path.join("vis/imgs", f"{image_id}.jpg"))


def write_json(obj, path: str) -> None:
    """Atomic write; an existing file is replaced (as the original does) with a warning."""
    if os.path.exists(path):
        log.warning("replacing %s", path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def write_report_data(path: str, overall: dict, img_to_eval: dict, gts: dict, predictions: list[dict],
                      image_root: str, model_id: str, split: str) -> None:
    """The original's ``<id>_<split>_report_data.pkl`` (ORT's ReportData: the evaluation, the predictions, the image
    root, the run id and the split) as plain dicts, so that it loads without this repository's code."""
    report = {"coco_eval": {"eval": overall, "imgToEval": img_to_eval, "gts": gts}, "predictions": predictions,
              "image_root": image_root, "model_id": model_id, "split": split}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump(report, f, protocol=2)
    os.replace(tmp, path)


def language_eval(predictions: list[dict], references: dict[int, list[str]], model_id: str, split: str,
                  meteor: bool = True, spice: bool = False, image_root: str = "",
                  results_dir: str = "eval_results") -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (+ SPICE) of the predictions whose image has references.

    Writes what the original writes: eval_results/<id>_<split>.json = {"overall": scores, "imgToEval": {image id:
    {"image_id", per-image scores..., "caption"}}}, and with an image root eval_results/<id>_<split>_report_data.pkl.
    """
    preds = [p for p in predictions if p["image_id"] in references]
    log.info("using %d/%d predictions", len(preds), len(predictions))
    if not preds:
        raise DataError("none of the predicted image ids is in the --ann_file references: pass the annotations of "
                        "the evaluated split")
    gts = {p["image_id"]: references[p["image_id"]] for p in preds}
    res = {p["image_id"]: [p["caption"]] for p in preds}
    overall, img_to_eval = evaluate_with_images(gts, res, tokenized=False, meteor=meteor, spice=spice)
    for p in preds:
        img_to_eval[p["image_id"]]["caption"] = p["caption"]
    os.makedirs(results_dir, exist_ok=True)
    write_json({"overall": overall, "imgToEval": img_to_eval}, os.path.join(results_dir, f"{model_id}_{split}.json"))
    if image_root:
        write_report_data(os.path.join(results_dir, f"{model_id}_{split}_report_data.pkl"), overall, img_to_eval,
                          gts, predictions, image_root, model_id, split)
    return overall


def eval_split(model, crit, loader, eval_kwargs: dict, device: torch.device, autocast=None):
    """Mean loss over the split (when labels exist and verbose_loss), predictions, and language stats."""
    verbose_loss = eval_kwargs.get("verbose_loss", 1)
    split = eval_kwargs.get("split", "val")
    lang_eval = eval_kwargs.get("language_eval", 0)
    beam_size = eval_kwargs.get("beam_size", 1)
    seq_per_img = loader.get_seq_per_img()
    # The references are read before decoding: a missing --ann_file must not cost the whole decoding.
    references = load_references(eval_kwargs.get("ann_file") or DEFAULT_ANN_FILE) if lang_eval == 1 else {}
    was_training = model.training
    model.eval()
    loss_sum, loss_evals = 0.0, 1e-8
    predictions = []
    ctx = autocast or torch.autocast("cpu", enabled=False)
    for data in loader:
        feats, masks, boxes = (None if x is None else x.to(device)
                               for x in (data["img_feats"], data["img_masks"], data["boxes"]))
        with torch.no_grad(), ctx:
            if data.get("labels") is not None and verbose_loss:
                labels, label_masks = data["labels"].to(device), data["label_masks"].to(device)
                out = model(feats, labels, masks, boxes)
                loss_sum += crit(out.float(), labels[:, 1:], label_masks[:, 1:]).item()
                loss_evals += 1
            rows = torch.arange(0, feats.size(0), seq_per_img, device=device)
            pick = (lambda x: None if x is None else x[rows])
            seq, _ = model.sample(pick(feats), pick(masks), pick(boxes), opt=eval_kwargs)
        if beam_size > 1 and eval_kwargs.get("verbose_beam", 0):
            for beams in model.done_beams:
                log.info("beams: %s", " | ".join(decode_sequence(loader.get_vocab(), b["seq"][None])[0] for b in beams))
        for info, sent in zip(data["infos"], decode_sequence(loader.get_vocab(), seq)):
            entry = {"image_id": info["id"], "caption": sent, "file_path": info["file_path"]}
            predictions.append(entry)
            if eval_kwargs.get("dump_images", 0) == 1:
                dump_image(os.path.join(eval_kwargs.get("image_root") or "", info["file_path"]), info["id"])
    lang_stats = None
    if lang_eval == 1:
        lang_stats = language_eval(predictions, references, eval_kwargs.get("id", "model"), split,
                                   meteor=bool(eval_kwargs.get("meteor", 1)), spice=bool(eval_kwargs.get("spice", 0)),
                                   image_root=eval_kwargs.get("image_root") or "")
    if was_training:
        model.train()
    return loss_sum / loss_evals, predictions, lang_stats
