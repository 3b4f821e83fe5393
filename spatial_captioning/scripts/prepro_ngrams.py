"""CIDEr-D document frequencies of the training references, for self-critical training.

    python scripts/prepro_ngrams.py --input_json data/dataset_coco.json --dict_json data/cocotalk.json \
        --output_pkl data/coco-train --split train

Writes <output_pkl>-words.p and <output_pkl>-idxs.p = {"document_frequency": defaultdict(float) {ngram tuple:
float}, "ref_len": number of images}, pickle protocol 2, as self-critical.pytorch does: ruotianluo's CiderD looks
n-grams up with ``[]`` and relies on the defaultdict for the ones no reference has. Each reference is its tokens +
<eos> (out-of-vocabulary words -> UNK); the idxs version spells words as vocabulary indices (<eos> -> "0").
--split train also takes restval.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
from collections import defaultdict

log = logging.getLogger("prepro_ngrams")


def in_split(img_split: str, split: str) -> bool:
    return split == "all" or img_split == split or (split == "train" and img_split == "restval")


def image_ngrams(refs: list[list[str]], n: int = 4) -> set[tuple[str, ...]]:
    """The set of 1..n-grams over all references of one image (document frequency counts images)."""
    grams = set()
    for words in refs:
        for k in range(1, n + 1):
            for i in range(len(words) - k + 1):
                grams.add(tuple(words[i:i + k]))
    return grams


def build_dict(imgs: list[dict], wtoi: dict[str, str], split: str):
    """Document frequencies (words and indices), streamed image by image: no per-reference dicts are kept.

    Word -> index is one-to-one (out-of-vocabulary words are UNK in both spellings), so the index version is the
    word version with its keys translated, computed once per distinct n-gram instead of once per image.
    """
    df_words: defaultdict = defaultdict(float)
    count = 0
    for img in imgs:
        if not in_split(img["split"], split):
            continue
        refs = [[t if t in wtoi else "UNK" for t in sent["tokens"] + ["<eos>"]] for sent in img["sentences"]]
        for g in image_ngrams(refs):
            df_words[g] += 1
        count += 1
    df_idxs = defaultdict(float, {tuple(wtoi[w] for w in g): v for g, v in df_words.items()})
    return df_words, df_idxs, count


def dump(obj, path: str) -> None:
    with open(path + ".tmp", "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the protocol of self-critical.pytorch's pickle_dump
    os.replace(path + ".tmp", path)


def main(params: dict) -> None:
    for key in ("input_json", "dict_json"):
        if not os.path.isfile(params[key]):
            raise SystemExit(f"prepro_ngrams: --{key} {params[key]} not found")
    with open(params["input_json"]) as f:
        imgs = json.load(f)["images"]
    with open(params["dict_json"]) as f:
        itow = json.load(f)["ix_to_word"]
    wtoi = {w: i for i, w in itow.items()}
    wtoi["<eos>"] = "0"
    if "UNK" not in wtoi and any(t not in wtoi for img in imgs for s in img["sentences"] for t in s["tokens"]):
        raise SystemExit(f"prepro_ngrams: {params['dict_json']} has no UNK but the captions have out-of-vocabulary "
                         "words: use the cocotalk.json made from the same dataset_coco.json")
    df_words, df_idxs, ref_len = build_dict(imgs, wtoi, params["split"])
    dump({"document_frequency": df_words, "ref_len": ref_len}, params["output_pkl"] + "-words.p")
    dump({"document_frequency": df_idxs, "ref_len": ref_len}, params["output_pkl"] + "-idxs.p")
    log.info("%d images, %d n-grams -> %s-{words,idxs}.p", ref_len, len(df_idxs), params["output_pkl"])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input_json", default="data/dataset_coco.json", help="Karpathy dataset_coco.json")
    p.add_argument("--dict_json", default="data/cocotalk.json", help="vocabulary from prepro_labels.py")
    p.add_argument("--output_pkl", default="data/coco-all", help="prefix of the output pickles")
    p.add_argument("--split", default="all", help="test, val, train or all")
    return p


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    main(vars(get_parser().parse_args()))
