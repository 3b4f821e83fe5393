"""Toy demo: stage 1 (pair<->caption retrieval) briefly, then stage 2 (captioning) from its checkpoint; reports the
teacher-forced token cross-entropy of the test change captions before and after stage 2 (lower is better), the CIDEr
parts, and writes before|after|caption figures."""
from __future__ import annotations

import argparse
import json
import os
import time

import main_task_caption
import main_task_retrieval
from util import save_atomic

SMALL = ["--clip_random_init", "--compact_vocab", "--clip_embed_dim", "64", "--clip_vision_width", "64",
         "--clip_vision_layers", "4", "--intra_num_hidden_layers", "2", "--clip_patch_size", "16",
         "--clip_text_width", "64", "--clip_text_layers", "2", "--image_resolution", "64",
         "--decoder_model", "decoder-tiny", "--cache_images", "--num_thread_reader", "0", "--max_words", "16",
         "--freeze_layer_num", "-1", "--datatype", "clevr", "--coef_lr", "1", "--n_display", "1000",
         "--batch_size", "32", "--batch_size_val", "64"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", required=True, help="toy root written by python -m toydata.idc")
    parser.add_argument("--out", required=True)
    parser.add_argument("--retrieval_epochs", type=int, default=7)
    parser.add_argument("--caption_epochs", type=int, default=6)
    args = parser.parse_args()
    start = time.time()
    data = os.path.join(args.toy, "clevr_change", "data")
    # --overwrite: a rerun of the demo replaces the demo's own earlier checkpoints.
    common = ["--data_path", data, "--features_path", data, "--overwrite"] + SMALL
    stage1_dir = os.path.join(args.out, "retrieval")
    stage1 = main_task_retrieval.main(["--do_train", "--epochs", str(args.retrieval_epochs), "--lr", "2e-3",
                                       "--output_dir", stage1_dir] + common)
    init = ["--init_model", os.path.join(stage1_dir, f"pytorch_model.bin.{args.retrieval_epochs - 1}"),
            "--gt_dir", os.path.join(args.toy, "gt"), "--no_meteor"]
    before = main_task_caption.main(["--do_eval", "--output_dir", os.path.join(args.out, "caption_before")]
                                    + init + common)
    vis = os.path.join(args.out, "figures")
    # --coef_lr 0.1: the adapted visual tower moves 10x slower than the decoder (the original: --coef_lr 1e-3).
    after = main_task_caption.main(["--do_train", "--epochs", str(args.caption_epochs), "--lr", "2e-3",
                                    "--output_dir", os.path.join(args.out, "caption"), "--save_vis", vis,
                                    "--vis_num", "6"] + init + common + ["--coef_lr", "0.1"])
    result = {
        "metric": "caption token cross-entropy, lower is better (toy test)",
        "before": before["token_ce"],
        "after": after["token_ce"],
        "seconds": round(time.time() - start, 1),
        "figures": sorted(os.path.join(vis, f) for f in os.listdir(vis)),
        "cider": {part: {"before": before["test"][part]["CIDEr"], "after": after["test"][part]["CIDEr"]}
                  for part in ("total", "sc")},
        "stage1_text_to_pair": stage1["test"]["text_to_pair"],
    }
    save_atomic(result, os.path.join(args.out, "demo_result.json"))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
