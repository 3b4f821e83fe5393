"""Loaders on the toy files (the same code path as the real data), the GT writer on the real Spot-the-Diff ground
truth, and one-line errors for bad inputs."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from caption_eval import load_gt, score_captions, score_parts
from conftest import CODE, ROOT, clevr_args, spot_args
from dataloaders.datasets import (ClevrCaptionDataset, ClevrRetrievalDataset, SpotCaptionDataset,
                                  SpotRetrievalDataset)
from modules.tokenization_clip import ClipTokenizer

REAL_SPOT_GT = Path(__file__).parent / "fixtures" / "spot_total_change_captions_reformat.json"


@pytest.fixture(scope="module")
def tok():
    return ClipTokenizer()


def test_spot_loaders(toy_root, tok):
    spot = toy_root / "spot-the-diff"
    ret = SpotRetrievalDataset("test", str(spot), str(spot / "images"), tok, max_words=32, image_resolution=224)
    reformat = json.loads((spot / "reformat_test.json").read_text())
    assert ret.image_num == len(reformat) == 64 and ret.sentence_num == sum(len(e["sentences"]) for e in reformat)
    assert ret.cut_off_points[-1] == len(ret)
    ids, mask, seg, bef, aft, pair_mask = ret[0]
    assert ids.shape == mask.shape == seg.shape == (1, 32) and ids.dtype == "int64"
    assert ids[0, 0] == 49406 and ids[0, mask.sum() - 1] == 49407 and ids[0, mask.sum():].sum() == 0
    assert bef.shape == aft.shape == (1, 3, 224, 224) and pair_mask.tolist() == [1, 1]
    cap = SpotCaptionDataset("test", str(spot), str(spot / "images"), tok, max_words=32)
    item = cap[0]
    assert len(cap) == 64 and item[-1] == f"{reformat[0]['img_id']}.png"
    text, in_cap, dec_mask, out_cap = item[0], item[6], item[7], item[8]
    assert text[0, :3].tolist() == [49406, 49407, 0]  # the text tower only sees [SOT, EOT]
    n = int(dec_mask.sum())
    assert in_cap[0, 0] == 49406 and (in_cap[0, 1:n] == out_cap[0, : n - 1]).all() and out_cap[0, n - 1] == 49407
    assert tok.decode(out_cap[0, : n - 1]).strip() in reformat[0]["sentences"]


def test_clevr_loaders(toy_root, tok):
    data = str(toy_root / "clevr_change" / "data")
    ret = ClevrRetrievalDataset("test", data, data, tok, max_words=32, image_resolution=64)
    change = json.loads((toy_root / "clevr_change" / "data" / "change_captions.json").read_text())
    assert ret.image_num == 64 and ret.sentence_num == 64 * 3 and ret.pairs[0][1] == change[ret.pairs[0][0]]
    cap = ClevrCaptionDataset("test", data, data, tok, max_words=32, image_resolution=64)
    item = cap[0]
    assert len(item) == 14 and item[-1] == ret.pairs[0][0].split("_")[-1]
    bef, sc, nsc = item[3], item[4], item[5]
    assert not torch.equal(sc, nsc) and not torch.equal(bef, nsc)
    assert tok.decode(item[12][0, : int(item[11].sum()) - 1]).strip() in cap.no_change[ret.pairs[0][0]]


def reconstruct_raw(gt: dict) -> list[dict]:
    """The raw test.json behind a COCO GT file: image entries in order, each with its run of annotations."""
    anns, raw, i = gt["annotations"], [], 0
    for k, image in enumerate(gt["images"]):
        nxt = gt["images"][k + 1]["id"] if k + 1 < len(gt["images"]) else None
        sentences = []
        while i < len(anns) and anns[i]["image_id"] == image["id"]:
            sentences.append(anns[i]["caption"])
            i += 1
            if nxt == image["id"]:
                break
        raw.append({"img_id": image["id"][: -len(".png")], "sentences": sentences})
    assert i == len(anns)
    return raw


@pytest.mark.parametrize("script", ["gt/eval_utils.py", "preprocess/eval_utils.py"])
def test_gt_writer_reproduces_the_real_spot_ground_truth(tmp_path, script):
    real = json.loads(REAL_SPOT_GT.read_text())
    assert len(real["images"]) == 1404 and len(real["annotations"]) == 2107
    (tmp_path / "test.json").write_text(json.dumps(reconstruct_raw(real)))
    subprocess.run([sys.executable, str(CODE / script), "--datatype", "spot", "--data_path", str(tmp_path),
                    "--gt_dir", str(tmp_path / "gt")], check=True, capture_output=True)
    written = (tmp_path / "gt" / "spot_total_change_captions_reformat.json").read_bytes()
    assert written == REAL_SPOT_GT.read_bytes()


def test_gt_writer_and_reformat_match_the_toy_files(toy_root, tmp_path):
    data = toy_root / "clevr_change" / "data"
    subprocess.run([sys.executable, str(CODE / "gt" / "eval_utils.py"), "--datatype", "clevr", "--data_path",
                    str(data), "--gt_dir", str(tmp_path)], check=True, capture_output=True)
    ours = json.loads((tmp_path / "clevr_total_change_captions_reformat.json").read_text())
    assert ours == json.loads((toy_root / "gt" / "clevr_total_change_captions_reformat.json").read_text())
    spot = tmp_path / "spot-the-diff"
    spot.mkdir()
    for split in ("train", "val", "test"):
        (spot / f"{split}.json").write_bytes((toy_root / "spot-the-diff" / f"{split}.json").read_bytes())
    subprocess.run([sys.executable, str(CODE / "preprocess" / "reformat_dataset.py"), "--data_path", str(spot)],
                   check=True, capture_output=True)
    for split in ("train", "val", "test"):
        assert (json.loads((spot / f"reformat_{split}.json").read_text())
                == json.loads((toy_root / "spot-the-diff" / f"reformat_{split}.json").read_text()))


def test_reformat_check_accepts_complete_splits_only(tmp_path):
    from preprocess.reformat_dataset import SPLIT_IMAGES, check_reformatted

    for split, n in SPLIT_IMAGES.items():
        entries = [{"img_id": str(i), "sentences": ["the car is gone"]} for i in range(n)]
        (tmp_path / f"reformat_{split}.json").write_text(json.dumps(entries))
    check_reformatted(str(tmp_path))
    (tmp_path / "reformat_val.json").write_text(json.dumps(entries[:-1] + [entries[0]]))  # a repeated image id
    with pytest.raises(SystemExit, match="reformat_val.json: 1270 entries for 1269 images"):
        check_reformatted(str(tmp_path))
    (tmp_path / "reformat_train.json").write_text("<html>quota exceeded")
    with pytest.raises(SystemExit, match="reformat_train.json: not readable JSON"):
        check_reformatted(str(tmp_path))


def test_scorer_on_real_spot_gt():
    """A reference caption scored against its own image's references beats a caption from another image; CIDEr is
    computed on the hypothesis ids only (2 of 1,270 images)."""
    gts = load_gt(str(REAL_SPOT_GT))
    ids = list(gts)[:2]
    good = [{"image_id": i, "caption": gts[i][0]} for i in ids]
    bad = [{"image_id": ids[0], "caption": gts[ids[1]][0]}, {"image_id": ids[1], "caption": gts[ids[0]][0]}]
    s_good, s_bad = score_captions(gts, good, meteor=False), score_captions(gts, bad, meteor=False)
    assert s_good["Bleu_1"] > s_bad["Bleu_1"] and s_good["CIDEr"] > s_bad["CIDEr"]
    parts = score_parts(gts, good, meteor=False)
    assert set(parts) == {"total", "sc"}


def cli_error(args: list[str], script=None) -> str:
    """Run an entry point in-process through its CLI wrapper; return the one line it prints (exit status 2)."""
    from errors import run_cli
    from main_task_retrieval import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert run_cli(lambda: (script or main)(args)) == 2
    message = stderr.getvalue().strip().splitlines()[-1]
    assert message.startswith("clip4idc: error: ")
    return message


def copy_spot(toy_root: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(toy_root / "spot-the-diff", dst)
    return dst


def spot_copy_args(toy_root: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    spot = copy_spot(toy_root, tmp_path / "spot-the-diff")
    args = spot_args(toy_root, tmp_path / "out")
    args[args.index("--data_path") + 1] = str(spot)
    args[args.index("--features_path") + 1] = str(spot / "images")
    return spot, args


def test_missing_image_of_a_pair_is_one_line(toy_root, tmp_path):
    spot, args = spot_copy_args(toy_root, tmp_path)
    first = json.loads((spot / "reformat_test.json").read_text())[0]["img_id"]
    (spot / "images" / f"{first}_2.png").unlink()
    message = cli_error(["--do_eval"] + args)
    assert "image not found" in message and f"{first}_2.png" in message and "make clip4idc-data" in message


def test_caption_json_without_a_field_is_one_line(toy_root, tmp_path):
    spot, args = spot_copy_args(toy_root, tmp_path)
    entries = json.loads((spot / "reformat_test.json").read_text())
    del entries[3]["sentences"]
    (spot / "reformat_test.json").write_text(json.dumps(entries))
    message = cli_error(["--do_eval"] + args)
    assert "reformat_test.json" in message and "'sentences'" in message


def test_wrong_clip_archive_is_one_line(toy_root, tmp_path):
    """A CLIP archive whose token table does not fit the tokenizer is refused by name; a missing one names the fix."""
    from modules.module_clip import CLIP, ClipConfig

    cfg = ClipConfig(embed_dim=16, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=16,
                     vocab_size=1000, transformer_width=64, transformer_heads=1, transformer_layers=1)
    archive = tmp_path / "ViT-B-32.pt"
    torch.save(CLIP(cfg, intra_layers=1).state_dict(), archive)
    args = [a for a in clevr_args(toy_root, tmp_path / "out") if a not in ("--clip_random_init", "--compact_vocab")]
    assert "1000 rows but the tokenizer has 49408 tokens" in cli_error(
        ["--do_eval", "--pretrained_clip_path", str(archive)] + args)
    message = cli_error(["--do_eval", "--pretrained_clip_path", str(tmp_path / "none.pt")] + args)
    assert "CLIP archive not found" in message and "make clip4idc-data" in message


def test_bad_flag_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(CODE / "main_task_caption.py"), "--do_eval", "--datatype", "msrvtt",
                           "--output_dir", str(tmp_path)], capture_output=True, text=True, env=env, cwd=str(CODE))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith("--datatype must be clevr or spot, "
                                                                                  "got 'msrvtt'")
