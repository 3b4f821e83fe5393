"""Spot-the-Diff: merge the raw entries that share an ``img_id`` (sentences concatenated in order, first-seen order)
into ``reformat_{train,val,test}.json``:

    python preprocess/reformat_dataset.py --data_path data/clip4idc/spot
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", required=True, help="folder holding the raw {train,val,test}.json")
    args = parser.parse_args(argv)
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
