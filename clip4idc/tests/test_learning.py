"""End to end on the toy CLEVR-Change layout: stage 1 learns pair<->caption retrieval, stage 2 (from the stage-1
checkpoint) learns the captions, and the checkpoints/logs/hypothesis files are written as the original.

The learning run uses its own 1,024-pair toy set (val/test 64 pairs each) and a patch-16 toy CLIP (4x4 grid on the
64x64 images: 34 joint tokens per pair) so that enough optimizer steps fit the suite's time budget."""
import json
import logging
from pathlib import Path

import pytest
import torch

import main_task_caption
import main_task_retrieval
from caption_eval import load_gt, score_captions
from conftest import clevr_args, spot_args
from toydata.idc import KEYWORDS, write

KIND = {"color": "recolour", "add": "add", "drop": "remove", "move": "move"}
LEARN_SIZE = 1024
STAGE1_EPOCHS, STAGE2_EPOCHS = 10, 6
TOY = ["--clip_patch_size", "16", "--max_words", "16", "--batch_size", "32",
       "--batch_size_val", "64", "--n_display", "1000", "--decoder_model", "decoder-tiny"]
STAGE1 = ["--lr", "2e-3", "--coef_lr", "1"]
# Stage 2 moves the adapted visual tower 10x slower than the decoder (the original: 1000x, --coef_lr 1e-3).
STAGE2 = ["--lr", "2e-3", "--coef_lr", "0.1"]


def run_chain(toy_root: Path, out: Path, stage1_epochs: int, stage2_epochs: int,
              stage2_flags: list[str] = STAGE2) -> dict:
    stage1 = main_task_retrieval.main(["--do_train", "--epochs", str(stage1_epochs)] + STAGE1
                                      + clevr_args(toy_root, out / "retrieval") + TOY)
    init = str(out / "retrieval" / f"pytorch_model.bin.{stage1_epochs - 1}")
    common = ["--init_model", init, "--gt_dir", str(toy_root / "gt"), "--no_meteor"] + TOY
    before = main_task_caption.main(["--do_eval"] + clevr_args(toy_root, out / "caption_before") + common)
    stage2 = main_task_caption.main(["--do_train", "--epochs", str(stage2_epochs), "--save_vis",
                                     str(out / "vis"), "--vis_num", "3"] + clevr_args(toy_root, out / "caption")
                                    + stage2_flags + common)
    return {"out": out, "stage1": stage1, "before": before, "stage2": stage2}


@pytest.fixture(scope="module")
def learn_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("idc1k")
    write(root, seed=0, size=LEARN_SIZE)
    return root


@pytest.fixture(scope="module")
def trained(learn_root, tmp_path_factory):
    return run_chain(learn_root, tmp_path_factory.mktemp("runs"), STAGE1_EPOCHS, STAGE2_EPOCHS)


def test_stage1_retrieval_learns(trained):
    """The issue's threshold on the 64 test pairs after 960 steps: text->pair R@1 >= 10 % (chance 1/64); mean rank
    well below chance (32.5); the training loss falls."""
    test = trained["stage1"]["test"]["text_to_pair"]
    assert test["R1"] >= 10.0
    assert test["MeanR"] < 20.0
    losses = [e["train_loss"] for e in trained["stage1"]["epochs"]]
    assert losses[-1] < losses[0] - 1.0


def test_stage2_learns_the_captions(trained, learn_root):
    """Teacher-forced token cross-entropy of the test change captions < 1 (untrained decoder: ~3.6); greedy captions
    tell changed from distractor pairs above chance, and beat the constant no-change sentence on CIDEr."""
    assert trained["stage2"]["token_ce"] < 1.0 < trained["before"]["token_ce"]
    losses = [e["train_loss"] for e in trained["stage2"]["epochs"]]
    assert losses[-1] < 0.5 * losses[0]
    hyps = json.loads((trained["out"] / "caption" / "hyp_ep_test.json").read_text())
    _, detect_acc = keyword_scores(learn_root, hyps)
    assert detect_acc >= 0.65  # chance 0.5; a collapsed decoder scores exactly 0.5
    scores, before = trained["stage2"]["test"], trained["before"]["test"]
    assert scores["sc"]["CIDEr"] > before["sc"]["CIDEr"] + 0.5
    assert scores["total"]["CIDEr"] > constant_sentence_cider(learn_root, hyps)


def test_stage1_outputs(trained):
    run = trained["out"] / "retrieval"
    for epoch in range(STAGE1_EPOCHS):
        state = torch.load(run / f"pytorch_model.bin.{epoch}", weights_only=True)
        assert "clip.visual.ln_mid.weight" in state and not any(k.startswith("decoder.") for k in state)
    assert "Text-to-Image-Pair" in (run / "log.txt").read_text()
    assert not list(run.glob("*.tmp*"))


def keyword_scores(toy_root: Path, hyps: list[dict]) -> tuple[float, float]:
    types = json.loads((toy_root / "clevr_change" / "data" / "type_mapping.json").read_text())
    kind_of = {name: KIND[t] for t, names in types.items() if t in KIND for name in names}
    changed = [h for h in hyps if not h["image_id"].endswith("_n")]
    kind_acc = sum(KEYWORDS[kind_of[h["image_id"]]] in h["caption"].split() for h in changed) / len(changed)
    detect_acc = sum(("no" in h["caption"].split()) == h["image_id"].endswith("_n") for h in hyps) / len(hyps)
    return kind_acc, detect_acc


def constant_sentence_cider(root: Path, hyps: list[dict]) -> float:
    """Total CIDEr of "there is no change" for every pair: it already earns the distractor half of the score."""
    gts = load_gt(str(root / "gt" / "clevr_total_change_captions_reformat.json"))
    constant = [{"image_id": h["image_id"], "caption": "there is no change"} for h in hyps]
    return score_captions(gts, constant, meteor=False)["CIDEr"]


@pytest.mark.slow
def test_issue_thresholds_after_long_training(learn_root, tmp_path):
    """The issue's end state: R@1 >= 10 % (chance 1/64), change-kind keyword accuracy >= 60 % (chance 25 %),
    changed vs distractor well above 50 %, token CE < 1, total CIDEr above a constant no-change sentence."""
    # A longer run lets the visual tower adapt faster in stage 2 (--coef_lr 0.3): the change kind needs it.
    trained = run_chain(learn_root, tmp_path, 30, 30, ["--lr", "2e-3", "--coef_lr", "0.3"])
    assert trained["stage1"]["test"]["text_to_pair"]["R1"] >= 10.0
    run = trained["out"] / "caption"
    hyps = json.loads((run / "hyp_ep_test.json").read_text())
    assert len(hyps) == 128 and sum(h["image_id"].endswith("_n") for h in hyps) == 64
    kind_acc, detect_acc = keyword_scores(learn_root, hyps)
    logging.getLogger(__name__).info("long run: kind accuracy %.3f, changed-vs-distractor %.3f", kind_acc, detect_acc)
    assert kind_acc >= 0.6  # chance 0.25
    assert detect_acc >= 0.8  # changed vs distractor pair
    scores, before = trained["stage2"]["test"], trained["before"]["test"]
    assert scores["total"]["CIDEr"] > constant_sentence_cider(learn_root, hyps) + 0.3
    assert scores["sc"]["CIDEr"] > before["sc"]["CIDEr"] + 0.5
    assert trained["stage2"]["token_ce"] < 1.0


def test_stage2_outputs(trained):
    run = trained["out"] / "caption"
    state = torch.load(run / f"pytorch_model.bin.{STAGE2_EPOCHS - 1}", weights_only=True)
    assert state["decoder.embeddings.word_embeddings.weight"].shape == state["clip.token_embedding.weight"].shape
    for epoch in range(STAGE2_EPOCHS):
        assert (run / f"hyp_ep_{epoch}.json").is_file()
    assert "CIDEr" in (run / "log.txt").read_text()
    assert len(list((trained["out"] / "vis").glob("*.png"))) == 3


def test_the_prefix_rerun_decoder_writes_the_same_toy_captions(trained, learn_root, tmp_path):
    """--no_decode_cache (the original's decoding) on the trained toy captioner: the 128 test captions of the cached
    decoder, word for word."""
    main_task_caption.main(["--do_eval", "--no_decode_cache", "--init_model", trained["stage2"]["best_model"],
                            "--gt_dir", str(learn_root / "gt"), "--no_meteor"] + clevr_args(learn_root, tmp_path) + TOY)
    cached = json.loads((trained["out"] / "caption" / "hyp_ep_test.json").read_text())
    assert json.loads((tmp_path / "hyp_ep_eval.json").read_text()) == cached
    assert len({h["caption"] for h in cached}) > 5  # captions that depend on the pair


def test_spot_caption_one_epoch(toy_root, tmp_path):
    """The Spot-the-Diff path end to end: train one epoch, score against the Spot GT (no distractor pairs)."""
    summary = main_task_caption.main(["--do_train", "--epochs", "1", "--lr", "1e-3", "--gt_dir", str(toy_root / "gt"),
                                      "--no_meteor", "--select_on", "test"] + spot_args(toy_root, tmp_path) + TOY)
    hyps = json.loads((tmp_path / "hyp_ep_0.json").read_text())
    assert len(hyps) == 64 and all(h["image_id"].endswith(".png") for h in hyps)
    assert set(summary["test"]) == {"total", "sc"} and (tmp_path / "pytorch_model.bin.0").is_file()

