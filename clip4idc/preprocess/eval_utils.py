"""COCO-format ground truth for scoring change captions (the original's preprocess/eval_utils.py, from
RobustChangeCaptioning), as functions and a command line:

    python preprocess/eval_utils.py --datatype spot  --data_path data/clip4idc/spot --gt_dir gt
    python preprocess/eval_utils.py --datatype clevr --data_path data/clip4idc/clevr_change/data --gt_dir gt
"""
from __future__ import annotations

import argparse
import json
import os

INFO = {k: "dummy" for k in ("contributor", "date_created", "description", "url", "version", "year")}


def coco_gt(entries: list[tuple[str, list[str]]]) -> dict:
    """{"info", "licenses", "type": "captions", "images": [{"filename", "id"}], "annotations": [{"caption", "id",
    "image_id"}]} with annotation ids counting from 0 over all captions in order."""
    images, annotations = [], []
    for image_id, captions in entries:
        images.append({"filename": image_id, "id": image_id})
        for caption in captions:
            annotations.append({"caption": caption, "id": len(annotations), "image_id": image_id})
    return {"info": INFO, "licenses": INFO, "type": "captions", "images": images, "annotations": annotations}


def write_json(obj: dict, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def coco_gt_format_save(gt_file: str, save_path: str, neg: bool = False) -> dict:
    """Spot-the-Diff: raw ``[{"img_id", "sentences"}]`` (ids may repeat) -> COCO GT with ids ``<img_id>.png``
    (``_n`` appended with ``neg``); one image entry per raw entry, as the original."""
    raw = json.load(open(gt_file))
    suffix = "_n" if neg else ""
    gt = coco_gt([(f"{item['img_id']}.png{suffix}", item["sentences"]) for item in raw])
    write_json(gt, save_path)
    return gt


def merge_gt_files(gt_file1: str, gt_file2: str, save_path: str) -> dict:
    """CLEVR-Change: change captions of every image as ``NNNNNN.png``, then every no-change caption as
    ``NNNNNN.png_n`` (keys ``CLEVR_default_NNNNNN.png`` -> the part after the last underscore)."""
    change, no_change = json.load(open(gt_file1)), json.load(open(gt_file2))
    entries = [(k.split("_")[-1], v) for k, v in change.items()]
    entries += [(k.split("_")[-1] + "_n", v) for k, v in no_change.items()]
    gt = coco_gt(entries)
    write_json(gt, save_path)
    return gt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write gt/<datatype>_total_change_captions_reformat.json")
    parser.add_argument("--datatype", choices=["spot", "clevr"], required=True)
    parser.add_argument("--data_path", required=True, help="Spot: folder with test.json; CLEVR: .../clevr_change/data")
    parser.add_argument("--gt_dir", default="gt")
    args = parser.parse_args(argv)
    os.makedirs(args.gt_dir, exist_ok=True)
    out = os.path.join(args.gt_dir, f"{args.datatype}_total_change_captions_reformat.json")
    if args.datatype == "spot":
        sources = [os.path.join(args.data_path, "test.json")]
    else:
        sources = [os.path.join(args.data_path, n) for n in ("change_captions.json", "no_change_captions.json")]
    for path in sources:
        if not os.path.isfile(path):
            raise SystemExit(f"eval_utils: {path} not found (run 'make clip4idc-data' or check --data_path)")
    if args.datatype == "spot":
        coco_gt_format_save(sources[0], out)
    else:
        merge_gt_files(sources[0], sources[1], out)
    print(out)


if __name__ == "__main__":
    main()
