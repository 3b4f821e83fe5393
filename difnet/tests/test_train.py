"""The toy task is learned, needs the segmentation flow, and the scripts around training work end to end."""
import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import engine
import lrp_total
import show_lrp
import test as test_script
import train
from builders import config_dict
from data.coco import CaptionDataset, ImageDataset, collate_captions, collate_images, load_splits
from data.features import GridFeatures, SegmentationFeatures
from data.text import CaptionTokenizer, build_vocab
from data.vocab import save_vocab
from distributed import DistInfo
from models import CaptioningModel, ModelConfig

SCENES = ("grass", "water", "sand", "snow")
SUBPROJECT = Path(__file__).resolve().parents[1]
TINY = dict(d_model=32, d_ff=128, h=4)


def scene_accuracy(results) -> float:
    """Fraction of test images whose caption names the scene word of its references."""
    hits = 0
    for _, gen, refs in results:
        truth = next(w for w in SCENES if w in refs[0].split())
        hits += truth in gen.split()
    return hits / len(results)


def train_toy(mode: str, toy: Path, epochs: int = 6):
    """Cross-entropy training with the engine at a tiny width; returns the model, the vocab and the test results
    before and after training."""
    random.seed(1234), np.random.seed(1234), torch.manual_seed(1234)
    splits = load_splits(str(toy / "annotations"))
    tokenizer = CaptionTokenizer()
    vocab = build_vocab(tokenizer(ex.caption) for ex in splits["train"] + splits["val"])
    grid = GridFeatures(str(toy / "coco_grid_feats2.hdf5"))
    seg = SegmentationFeatures(str(toy / "segmentations")) if mode.startswith("difnet") else None
    model = CaptioningModel(ModelConfig(mode=mode, vocab_size=len(vocab), **TINY))
    test_loader = DataLoader(ImageDataset(splits["test"], grid, seg), batch_size=10, collate_fn=collate_images)
    cpu = torch.device("cpu")
    before = engine.generate_captions(model, test_loader, vocab, cpu, progress=False)
    loader = DataLoader(CaptionDataset(splits["train"], grid, seg, tokenizer), batch_size=50, shuffle=True,
                        drop_last=True, collate_fn=collate_captions(vocab))
    optim = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
    loss_fn = torch.nn.NLLLoss(ignore_index=vocab.stoi["<pad>"])
    losses = [engine.train_xe(model, loader, optim, loss_fn, cpu, e, DistInfo()) for e in range(epochs)]
    after = engine.generate_captions(model, test_loader, vocab, cpu, progress=False)
    return model, vocab, before, after, losses


@pytest.fixture(scope="session")
def difnet_run(toy):
    return train_toy("difnet", toy)


def test_toy_run_learns(difnet_run):
    _, _, before, after, losses = difnet_run
    cider_before = engine.score_captions(before, meteor=False)["CIDEr"]
    cider_after = engine.score_captions(after, meteor=False)["CIDEr"]
    assert losses[-1] < 0.5 * losses[0]
    assert cider_before < 0.5 and cider_after > 2.0, (cider_before, cider_after)


def test_scene_word_needs_the_segmentation_flow(difnet_run, toy):
    """The scene (grass/water/sand/snow) is only in the segmentation input: difnet names it, base guesses."""
    _, _, _, after_difnet, _ = difnet_run
    _, _, _, after_base, _ = train_toy("base", toy)
    assert scene_accuracy(after_difnet) >= 0.9
    assert scene_accuracy(after_base) <= 0.6


def test_lrp_scripts_on_a_trained_model(difnet_run, toy, tmp_path):
    model, vocab, _, after, _ = difnet_run
    torch.save({"state_dict": model.state_dict(), "config": config_dict(model.cfg)}, tmp_path / "toy.pth")
    save_vocab(vocab, str(tmp_path / "vocab.pkl"))
    args = test_script.get_args_parser(batch_size=1).parse_args([
        "--mode", "difnet", "--exp_name", "toy", "--model_path", str(tmp_path), "--out_path", str(tmp_path),
        "--vocab_path", str(tmp_path / "vocab.pkl"), "--features_path", str(toy / "coco_grid_feats2.hdf5"),
        "--pixel_path", str(toy / "segmentations"), "--annotation_folder", str(toy / "annotations"), "--workers", "0"])
    test_script.write_caption_files(after[:3], str(tmp_path), "toy")
    result = lrp_total.main(args)
    assert len(result) == 3
    for item, (image_id, gen, _) in zip(result, after[:3]):
        T = len(gen.split()) + 1  # <bos> + words, no <eos>
        assert item["image_id"] == image_id and item["dst"].shape == (1, T) and item["src"].shape == (1, 49, 2048)
        assert item["inp_lrp"].shape == (T, 49) and item["out_lrp"].shape == (T, T)
        assert np.isfinite(item["inp_lrp"]).all() and np.abs(item["inp_lrp"]).sum() > 0
    figures = show_lrp.main(argparse.Namespace(exp_name=["toy"], out_path=str(tmp_path),
                                               image_root=str(toy / "images"), max_images=2, composite_images=2))
    assert figures[0].endswith("contribution.jpg") and figures[1].endswith("toy_relevance.png") and len(figures) == 4
    assert all(os.path.getsize(f) > 1000 for f in figures) and figures[2].endswith(".png")
    with Image.open(figures[1]) as composite:
        assert composite.width >= 800 and composite.height > 400  # two rows of panels


def test_evaluation_repeats_and_does_not_depend_on_the_batch(difnet_run, toy, tmp_path, capsys):
    """test.py run twice in one process prints the same metrics, at batch 1 (generate_caption.py's default) as at
    a batch size that leaves a final batch of one."""
    model, vocab, _, _, _ = difnet_run
    torch.save({"state_dict": model.state_dict(), "config": config_dict(model.cfg)}, tmp_path / "toy.pth")
    save_vocab(vocab, str(tmp_path / "vocab.pkl"))
    n_test = len(ImageDataset(load_splits(str(toy / "annotations"))["test"], None, None))

    def args(batch_size: int) -> argparse.Namespace:
        return test_script.get_args_parser().parse_args([
            "--mode", "difnet", "--exp_name", "toy", "--model_path", str(tmp_path), "--batch_size", str(batch_size),
            "--vocab_path", str(tmp_path / "vocab.pkl"), "--features_path", str(toy / "coco_grid_feats2.hdf5"),
            "--pixel_path", str(toy / "segmentations"), "--annotation_folder", str(toy / "annotations"),
            "--workers", "0", "--no_meteor"])

    batched = test_script.predict(args(n_test - 1))
    assert len({gen for _, gen, _ in batched}) > 1
    capsys.readouterr()
    for _ in range(2):
        assert test_script.predict(args(1)) == batched
        test_script.main(args(1))
    first, second = capsys.readouterr().out.splitlines()
    assert first == second and "CIDEr" in first


def train_argv(toy: Path, out: Path) -> list[str]:
    return ["--mode", "difnet_lrp", "--exp_name", "toy", "--features_path", str(toy / "coco_grid_feats2.hdf5"),
            "--pixel_path", str(toy / "segmentations"), "--annotation_folder", str(toy / "annotations"),
            "--vocab_path", str(out / "vocab.pkl"), "--model_path", str(out / "models"),
            "--logs_folder", str(out / "tb"), "--workers", "0", "--d_model", "16", "--d_ff", "32", "--head", "2",
            "--N_enc", "2", "--N_dec", "1", "--no_meteor", "--xe_base_lr", "3e-3", "--rl_lr", "1e-4",
            "--switch_epoch", "0"]


def run_train(toy: Path, out: Path, *extra: str) -> None:
    train.main(train.get_args_parser().parse_args([*train_argv(toy, out), *extra]))


def kill_after_first_checkpoint(toy: Path, out: Path) -> None:
    """Launch train.py for 3 epochs and SIGKILL it as soon as the epoch-0 checkpoint exists (epoch 1 under way)."""
    argv = [sys.executable, "train.py", *train_argv(toy, out), "--max_epochs", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SUBPROJECT.parent), str(SUBPROJECT)])}
    out.mkdir(parents=True)
    with open(out / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(argv, cwd=SUBPROJECT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        last = out / "models" / "toy_last.pth"
        deadline = time.monotonic() + 300
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert last.exists(), (out / "stderr.txt").read_text()[-2000:]


def test_kill_then_resume_reaches_the_same_weights_and_logs_tensorboard(small_toy, tmp_path):
    """Epoch 0 is cross-entropy, epoch 1 SCST: a run killed during epoch 1 and resumed with --resume_last ends with
    the same weights, optimizer and phase as an uninterrupted one."""
    run_train(small_toy, tmp_path / "full", "--max_epochs", "2")
    kill_after_first_checkpoint(small_toy, tmp_path / "split")
    assert torch.load(tmp_path / "split/models/toy_last.pth", weights_only=False)["epoch"] == 0
    run_train(small_toy, tmp_path / "split", "--max_epochs", "1", "--resume_last")
    full = torch.load(tmp_path / "full/models/toy_last.pth", weights_only=False)
    split = torch.load(tmp_path / "split/models/toy_last.pth", weights_only=False)
    assert full["epoch"] == split["epoch"] == 1 and full["use_rl"] and split["use_rl"]
    for key, value in full["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), key
    assert full["optimizer"]["param_groups"][0]["lr"] == 1e-4
    assert set(full) >= {"torch_rng_state", "cuda_rng_state", "numpy_rng_state", "random_rng_state", "epoch",
                         "val_loss", "val_cider", "state_dict", "optimizer", "scheduler", "patience",
                         "best_cider", "use_rl"}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "full/tb/toy"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags >= {"data/train_loss", "data/val_loss", "data/val_cider", "data/val_bleu1", "data/val_bleu4",
                    "data/val_rouge", "data/test_cider", "data/reward", "data/reward_baseline"}
    assert [e.step for e in events.Scalars("data/train_loss")] == [0, 1]
    assert events.Scalars("data/val_loss")[-1].value == pytest.approx(full["val_loss"], rel=1e-6)
    assert events.Scalars("data/val_cider")[-1].value == pytest.approx(full["val_cider"], rel=1e-6)


def test_the_decode_cache_keeps_the_toy_captions(difnet_run, toy):
    """On the trained toy model, the cached beam search captions the test split as the original's path does."""
    model, vocab, _, after, _ = difnet_run
    splits = load_splits(str(toy / "annotations"))
    loader = DataLoader(ImageDataset(splits["test"], GridFeatures(str(toy / "coco_grid_feats2.hdf5")),
                                     SegmentationFeatures(str(toy / "segmentations"))),
                        batch_size=10, collate_fn=collate_images)
    cpu = torch.device("cpu")
    reprojected = engine.generate_captions(model, loader, vocab, cpu, progress=False, cache=False)
    assert reprojected == after == engine.generate_captions(model, loader, vocab, cpu, progress=False, cache=True)

