"""COCO caption metrics, numerically identical to pycocoevalcap 1.2 and much faster.

    from shared_eval.captions import tokenize, PTBTokenizer, Bleu, Meteor, Rouge, Cider, CiderD, Spice, evaluate

Command line (the coco-caption evaluation table):

    python -m shared_eval.captions --annotations captions_val2014.json --results results.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .bleu import Bleu, _check
from .cider import Cider, CiderD, document_frequency
from .meteor import Meteor, MeteorUnavailableError
from .ngrams import Batch
from .ptb import PTBTokenizer, tokenize
from .rouge import Rouge
from .spice import Spice, SpiceUnavailableError

__all__ = ["tokenize", "PTBTokenizer", "Bleu", "Meteor", "Rouge", "Cider", "CiderD", "Spice", "evaluate",
           "evaluate_with_images", "document_frequency", "load_coco_captions", "MeteorUnavailableError",
           "SpiceUnavailableError", "METRICS"]

logger = logging.getLogger(__name__)

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
_spice_skip_logged = False


def _as_strings(captions: Mapping, what: str) -> dict:
    out = {}
    for k, caps in captions.items():
        if isinstance(caps, str) or not hasattr(caps, "__iter__"):
            raise TypeError(f"{what}[{k!r}] must be a list of captions, got {type(caps).__name__}")
        out[k] = [c["caption"] if isinstance(c, Mapping) else c for c in caps]
    return out


def evaluate_with_images(gts: Mapping, res: Mapping, *, tokenized: bool = False, meteor: bool = True,
                         spice: bool = False) -> tuple[dict[str, float], dict]:
    """Corpus scores and per-image scores, as ``COCOEvalCap.eval`` and ``COCOEvalCap.imgToEval``.

    ``gts``: key -> reference captions (str or ``{"caption": str}``); ``res``: key -> one caption.
    Raw captions are PTB-tokenized (references and results in two calls, as coco-caption does) unless
    ``tokenized`` is true.
    """
    global _spice_skip_logged
    gts, res = _as_strings(gts, "gts"), _as_strings(res, "res")
    if gts.keys() != res.keys():
        raise ValueError(f"gts and res must have the same keys ({len(gts.keys() - res.keys())} only in gts, "
                         f"{len(res.keys() - gts.keys())} only in res)")
    meteor_scorer = Meteor() if meteor else None  # loads (or on first use builds) its resource cache
    if not tokenized:
        tok = PTBTokenizer()
        gts, res = tok.tokenize(gts), tok.tokenize(res)
    _check(gts, res)
    keys = list(gts)
    batch = Batch([res[k][0] for k in keys], [gts[k] for k in keys], 4)  # shared by BLEU and CIDEr-D
    bleu = Bleu(4).score_batch(batch)
    rouge = Rouge().compute_score(gts, res)
    cider = Cider().score_batch(batch)
    results: list = [(bleu, ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"])]
    if meteor_scorer is not None:
        results.append((meteor_scorer.compute_score(gts, res), "METEOR"))
    results += [(rouge, "ROUGE_L"), (cider, "CIDEr")]
    if spice:
        results.append((Spice().compute_score(gts, res), "SPICE"))
    elif not _spice_skip_logged:
        _spice_skip_logged = True
        logger.warning("SPICE skipped (it needs Stanford CoreNLP 3.6.0; pass spice=True once installed)")
    corpus: dict[str, float] = {}
    per_image: dict = {k: {"image_id": k} for k in keys}
    for (score, scores), names in results:
        if isinstance(names, list):
            for sc, scs, name in zip(score, scores, names):
                corpus[name] = float(sc)
                for k, s in zip(keys, scs):
                    per_image[k][name] = s
        else:
            corpus[names] = float(score)
            for k, s in zip(keys, scores):
                per_image[k][names] = s
    return corpus, per_image


def evaluate(gts: Mapping, res: Mapping, *, tokenized: bool = False, meteor: bool = True,
             spice: bool = False) -> dict[str, float]:
    """Corpus scores ``{"Bleu_1".."Bleu_4", "METEOR", "ROUGE_L", "CIDEr"[, "SPICE"]}`` (see evaluate_with_images)."""
    return evaluate_with_images(gts, res, tokenized=tokenized, meteor=meteor, spice=spice)[0]


def _read_json(path: Path):
    """A JSON file's content; a missing or malformed file is a ValueError/FileNotFoundError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _check_captions(path: Path, items, what: str) -> None:
    """Every caption is a string: a null or a number would otherwise fail deep inside the tokenizer."""
    for key, caption in items:
        if not isinstance(caption, str):
            raise ValueError(f"{path}: the caption of {what} {key!r} is {json.dumps(caption)}, not a string")


def load_coco_captions(annotations: str | Path, results: str | Path) -> tuple[dict, dict]:
    """gts and res for the images of a coco-caption results file, in pycocotools' ``loadRes`` order.

    Keys are the image ids of the results, in the order of the annotation file's ``images``; captions keep
    file order within an image.
    """
    annotations, results = Path(annotations), Path(results)
    ann = _read_json(annotations)
    try:
        images, anns = ann["images"], ann["annotations"]
    except (KeyError, TypeError):
        raise ValueError(f"{annotations}: not a COCO caption annotation file (needs 'images' and 'annotations')")
    preds = _read_json(results)
    if not isinstance(preds, list) or any(not isinstance(p, dict) or "image_id" not in p or "caption" not in p
                                          for p in preds):
        raise ValueError(f"{results}: expected a JSON list of {{'image_id': ..., 'caption': ...}}")
    if not preds:
        raise ValueError(f"{results}: the results list is empty; nothing to evaluate")
    _check_captions(results, ((p["image_id"], p["caption"]) for p in preds), "image_id")
    _check_captions(annotations, ((a.get("id"), a.get("caption")) for a in anns), "annotation id")
    res_by_id: dict = {}
    for p in preds:
        res_by_id.setdefault(p["image_id"], []).append(p["caption"])
    known = {img["id"] for img in images}
    unknown = [i for i in res_by_id if i not in known]
    if unknown:
        raise ValueError(f"{results}: {len(unknown)} image ids are not in {annotations} (e.g. {unknown[0]!r})")
    gts_by_id: dict = {}
    for a in anns:
        gts_by_id.setdefault(a["image_id"], []).append(a["caption"])
    keys = [img["id"] for img in images if img["id"] in res_by_id]
    missing = [k for k in keys if k not in gts_by_id]
    if missing:
        raise ValueError(f"{annotations}: image {missing[0]!r} has no reference caption")
    return {k: gts_by_id[k] for k in keys}, {k: res_by_id[k] for k in keys}


def _check_writable(out: Path) -> None:
    """Fail before the evaluation, not after it, when --out cannot be written."""
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give a file path such as {out / 'scores.json'}")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {out}: {folder} is a file, not a folder; choose another --out")
    if not folder.is_dir():
        raise ValueError(f"--out {out}: folder {folder} does not exist; create it first (mkdir -p {folder})")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out {out}: folder {folder} is not writable; choose another --out")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared_eval.captions",
                                     description="coco-caption evaluation (pycocoevalcap-exact numbers)")
    parser.add_argument("--annotations", required=True, help="COCO caption annotation json (references)")
    parser.add_argument("--results", required=True, help="results json: [{'image_id': ..., 'caption': ...}]")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR")
    parser.add_argument("--spice", action="store_true", help="also compute SPICE (needs Stanford CoreNLP 3.6.0)")
    parser.add_argument("--out", help="also write the scores to this json file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.out:
            _check_writable(Path(args.out))
        gts, res = load_coco_captions(args.annotations, args.results)
        scores = evaluate(gts, res, meteor=not args.no_meteor, spice=args.spice)
        for name, value in scores.items():
            print(f"{name}: {value!r}")
        if args.out:
            out = Path(args.out)
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps(scores, indent=2))
            tmp.replace(out)
    except (OSError, ValueError, MeteorUnavailableError, SpiceUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
