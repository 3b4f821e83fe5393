"""Spot-the-Diff: merge the raw entries that share an ``img_id`` (sentences concatenated in order, first-seen order)
into ``reformat_{train,val,test}.json``:

    python preprocess/reformat_dataset.py --data_path data/clip4idc/spot

`--check FOLDER` instead verifies reformatted files made elsewhere (the authors' Drive copies): the schema, one entry
per image and the published number of images per split.
"""
from __future__ import annotations

import argparse
import json
import os


def reformat(data: list[dict]) -> list[dict]:
    merged: dict[str, list[str]] = {}
    for item in data:
        merged.setdefault(item["img_id"], []).extend(item["sentences"])
    return [{"img_id": k, "sentences": v} for k, v in merged.items()]


# Images per split of Spot-the-Diff's reformatted files (one entry per img_id).
SPLIT_IMAGES = {"train": 8566, "val": 1493, "test": 1270}


def check_reformatted(folder: str) -> None:
    """Raise SystemExit naming the first file that is not a complete reformatted split."""
    for split, expected in SPLIT_IMAGES.items():
        path = os.path.join(folder, f"reformat_{split}.json")
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"reformat_dataset: {path}: not readable JSON ({e})")
        if not isinstance(data, list) or not all(
                isinstance(d, dict) and isinstance(d.get("img_id"), str) and isinstance(d.get("sentences"), list)
                for d in data):
            raise SystemExit(f"reformat_dataset: {path}: expected a list of {{'img_id', 'sentences'}} entries")
        ids = {d["img_id"] for d in data}
        if len(ids) != len(data) or len(ids) != expected:
            raise SystemExit(f"reformat_dataset: {path}: {len(data)} entries for {len(ids)} images, expected one "
                             f"entry for each of {expected} images")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--data_path", help="folder holding the raw {train,val,test}.json")
    what.add_argument("--check", help="folder holding reformat_{train,val,test}.json made elsewhere: verify them")
    args = parser.parse_args(argv)
    if args.check:
        check_reformatted(args.check)
        return
    for split in ("train", "val", "test"):
        src = os.path.join(args.data_path, f"{split}.json")
        if not os.path.isfile(src):
            raise SystemExit(f"reformat_dataset: {src} not found (get harsh19/spot-the-diff data/annotations)")
        dst = os.path.join(args.data_path, f"reformat_{split}.json")
        with open(f"{dst}.tmp", "w") as f:
            json.dump(reformat(json.load(open(src))), f)
        os.replace(f"{dst}.tmp", dst)


if __name__ == "__main__":
    main()
