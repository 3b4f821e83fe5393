"""End to end on the toy data: learning, kill + resume, 2-process gloo DDP with merged predictions, predict.py."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import eval_script
import main_dist
from config import load_config, merge_overrides
from models import build_model
from util.checkpoint import load_checkpoint, save_checkpoint

from conftest import ENV, GIN, NARROW, toy_flags


@pytest.fixture(scope="module")
def learned(small_toy, tmp_path_factory):
    """A short run that must learn: 32 toy rows used for training and validation (fitting is the claim here;
    generalisation to unseen scenes is the slow test's and the demo's)."""
    tmp = tmp_path_factory.mktemp("learn")
    rows = pd.read_csv(small_toy / "csv_dir" / "train_flat.csv").iloc[:32]
    (tmp / "csv_dir").mkdir()
    rows.to_csv(tmp / "csv_dir" / "rows.csv", index=False)
    flags = toy_flags(small_toy, tmp) + [f"--ds_info.toy.val_csv_file={tmp}/csv_dir/rows.csv",
                                         f"--ds_info.toy.trn_csv_file={tmp}/csv_dir/rows.csv",
                                         "--lr=2e-3", "--seed=0", "--lstm_init=zeros", "--bs=4", "--use_reduce_lr_plateau=False"]
    before = main_dist.main_dist("learn0", dict(f[2:].split("=", 1) for f in flags + ["--only_val=True", "--resume=False"]))
    results = main_dist.main_dist("learn", dict(f[2:].split("=", 1) for f in flags + ["--epochs=15"]))
    return {"tmp": tmp, "flags": flags, "before": before["valid"], "after": results["valid"], "csv": tmp / "csv_dir" / "rows.csv"}


def test_toy_run_learns(learned):
    log = (learned["tmp"] / "txt_logs" / "learn.txt").read_text().splitlines()
    rows = [line.split() for line in log if line[:1].isdigit()]
    assert len(rows) == 15
    trn_loss = [float(r[1]) for r in rows]
    assert trn_loss[-1] < 0.6 * trn_loss[0]
    assert learned["before"]["Acc"] < 0.1
    best = torch.load(learned["tmp"] / "models" / "learn.pth", weights_only=False)["best_met"]
    assert best > learned["before"]["Acc"] + 0.1


def test_outputs_under_tmp_path(learned):
    tmp = learned["tmp"]
    for path in ("txt_logs/learn.txt", "ext_logs/learn.txt", "models/learn.pth", "predictions/learn/val_preds_learn.pkl"):
        assert (tmp / path).is_file(), path
    assert any((tmp / "tb_logs" / "learn").iterdir())
    assert not list((tmp / "models").glob(".*tmp*"))
    acc, correct, total = eval_script.evaluate(tmp / "predictions" / "learn" / "val_preds_learn.pkl",
                                               learned["csv"])
    best = torch.load(tmp / "models" / "learn.pth", weights_only=False)["best_met"]
    # eval_script (pixels, IoU > 0.5) agrees with the in-training Acc (normalised boxes, IoU >= 0.5) of that epoch.
    assert total == 32 and acc > 0 and abs(acc - best) <= 1 / 32


def test_kill_then_resume_continues(learned):
    tmp = learned["tmp"]
    ckpt_before = torch.load(tmp / "models" / "learn.pth", weights_only=False)
    proc = subprocess.Popen([sys.executable, "code/main_dist.py", "learn", *learned["flags"], "--epochs=50"],
                            cwd=GIN, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ext_log = tmp / "ext_logs" / "learn.txt"
    deadline = time.monotonic() + 120
    while "loaded model from" not in ext_log.read_text().split("run learn:")[-1] and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = torch.load(tmp / "models" / "learn.pth", weights_only=False)  # never left half-written
    assert ckpt["num_epoch"] >= ckpt_before["num_epoch"]
    cfg = merge_overrides(load_config(), dict(f[2:].split("=", 1) for f in learned["flags"]))
    model = build_model(cfg, 9, load_pretrained=False)
    load_checkpoint(tmp / "models" / "learn.pth", model)
    run_flags = dict(f[2:].split("=", 1) for f in learned["flags"] + ["--epochs=1", "--resume=True"])
    main_dist.main_dist("learn", run_flags)
    rows = [line.split() for line in (tmp / "txt_logs" / "learn.txt").read_text().splitlines() if line[:1].isdigit()]
    assert int(rows[-1][0]) == ckpt["num_epoch"] + 1  # the epoch counter continues from the checkpoint


def test_two_process_gloo_ddp_trains_and_merged_predictions_evaluate(small_toy, tmp_path):
    cfg = merge_overrides(load_config(), dict(f[2:].split("=", 1) for f in NARROW))
    save_checkpoint(tmp_path / "init.pth", build_model(cfg, 9, load_pretrained=False), num_epoch=0, best_met=-1.0)
    flags = toy_flags(small_toy, tmp_path / "out") + ["--lstm_init=zeros", "--bs=4", "--seed=0"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "code/main_dist.py", "ddp",
           *flags, "--epochs=1", "--max_train_batches=3", f"--resume_path={tmp_path / 'init.pth'}"]
    proc = subprocess.run(cmd, cwd=GIN, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    preds = tmp_path / "out" / "predictions" / "ddp"
    assert (preds / "0_val_preds_ddp.pkl").is_file() and (preds / "1_val_preds_ddp.pkl").is_file()
    val_csv = small_toy / "csv_dir" / "val.csv"
    n_val = len(val_csv.read_text().splitlines()) - 1
    ddp_acc, _, total = eval_script.evaluate(preds / "val_preds_ddp.pkl", val_csv, num_gpus=2)
    assert total == n_val  # padded, shuffled shards cover every row once after de-duplication
    # The same checkpoint evaluated by one process gives the same accuracy.
    single = flags + ["--only_val=True", f"--resume_path={tmp_path / 'out' / 'models' / 'ddp.pth'}"]
    main_dist.main_dist("single", dict(f[2:].split("=", 1) for f in single))
    acc, _, _ = eval_script.evaluate(tmp_path / "out" / "predictions" / "single" / "dl0_preds.pkl", val_csv)
    assert acc == ddp_acc


def test_predict_writes_png(learned, small_toy, tmp_path):
    import predict

    out = tmp_path / "pred.png"
    image = next((small_toy / "saiapr_tc12_images").iterdir())
    predict.main([str(image), "left red circle", f"--resume_path={learned['tmp'] / 'models' / 'learn.pth'}",
                  f"--out={out}", *NARROW])
    from PIL import Image

    assert Image.open(out).size == Image.open(image).size


def test_predict_gives_main_dists_boxes_with_the_zero_lstm_state(learned, small_toy):
    """predict.py (zeros by default) and an evaluation run with --lstm_init=zeros give the same box for a row."""
    import pickle

    import predict

    flags = learned["flags"] + ["--only_val=True", f"--resume_path={learned['tmp'] / 'models' / 'learn.pth'}"]
    main_dist.main_dist("agree", dict(f[2:].split("=", 1) for f in flags))
    with (learned["tmp"] / "predictions" / "agree" / "dl0_preds.pkl").open("rb") as f:
        boxes = {p["id"]: p["pred_boxes"] for p in pickle.load(f)}
    rows = pd.read_csv(learned["csv"])
    cfg = predict.predict_config({**dict(f[2:].split("=", 1) for f in NARROW),
                                  "resume_path": str(learned["tmp"] / "models" / "learn.pth")})
    for row in range(3):
        image = small_toy / "saiapr_tc12_images" / rows["img_id"][row]
        box, _ = predict.predict(image, rows["query"][row], cfg)
        # Batch 1 here, batch 4 there: float32 batch gaps measured <= 6.4e-6 px (test_batch_invariance.py).
        assert box == pytest.approx(boxes[row], abs=1e-4)


def test_imagenet_warning_only_when_no_checkpoint_replaces_the_backbone(small_toy, tmp_path):
    """An evaluation run with a full checkpoint does not warn that the ResNet-50 starts random; one without does."""
    rows = pd.read_csv(small_toy / "csv_dir" / "val.csv").iloc[:2]
    rows.to_csv(tmp_path / "val.csv", index=False)
    full_backbone = {**dict(f[2:].split("=", 1) for f in NARROW), "backbone_width": "64", "backbone_layers": "[3,4,6,3]",
                     "resize_img": "[64,64]", "pretrained_path": str(tmp_path / "absent" / "resnet50.pth")}
    cfg = merge_overrides(load_config(), full_backbone)
    save_checkpoint(tmp_path / "full.pth", build_model(cfg, 9, load_pretrained=False), num_epoch=1, best_met=0.0)
    flags = {**dict(f[2:].split("=", 1) for f in toy_flags(small_toy, tmp_path / "out")), **full_backbone,
             "ds_info.toy.val_csv_file": str(tmp_path / "val.csv"), "only_val": "True", "lstm_init": "zeros"}
    main_dist.main_dist("with_ckpt", {**flags, "resume_path": str(tmp_path / "full.pth")})
    log = (tmp_path / "out" / "ext_logs" / "with_ckpt.txt").read_text()
    assert "full.pth" in log and "RANDOM" not in log and "ImageNet ResNet-50 weights not found" not in log
    main_dist.main_dist("no_ckpt", {**flags, "resume": "False"})
    assert "ImageNet ResNet-50 weights not found" in (tmp_path / "out" / "ext_logs" / "no_ckpt.txt").read_text()


def test_help_says_which_lstm_state_each_script_starts_from(capsys):
    import predict

    main_dist.main(["--help"])
    help_text = capsys.readouterr().out
    assert "--lstm_init=random" in help_text and "different boxes" in help_text and "--lstm_init=zeros" in help_text
    assert "--resize_filter=nearest" in help_text  # every key is listed with its default
    predict.main(["--help"])
    assert "starts from zeros" in capsys.readouterr().out


@pytest.mark.slow
def test_toy_learns_within_five_cpu_minutes_and_needs_the_expression(tmp_path):
    """The issue's proof: acc@0.5 on toy val > 0.6 within 5 CPU minutes at narrow width, >= 0.2 above blanked
    (best validation epoch of each run, as the original selects its model)."""
    from toydata.zsgnet_csv import write

    import demo

    toy = tmp_path / "toy"
    write(toy, seed=0)
    # Whole epochs until 240 CPU s are used, so the run ends within 300 CPU s (one epoch is about 50 CPU s).
    full = demo.train_briefly(toy, tmp_path / "full", cpu_seconds=240)
    blank = demo.train_briefly(toy, tmp_path / "blank", cpu_seconds=240, blank=True)
    assert full["cpu_seconds"] < 300
    best_val = max(epoch["val_Acc"] for epoch in full["run"].history)
    best_blank_val = max(epoch["val_Acc"] for epoch in blank["run"].history)
    assert best_val > 0.6
    assert best_val >= best_blank_val + 0.2
    assert full["after"] >= blank["after"] + 0.2  # the toy test split agrees


def test_zsgnet_baseline_config_trains_on_toy(small_toy, tmp_path):
    flags = dict(f[2:].split("=", 1) for f in toy_flags(small_toy, tmp_path) + ["--epochs=1", "--max_train_batches=2",
                                                                                "--resize_img=[96,96]"])
    main_dist.main_dist("zsg", flags, cfg_file=GIN / "configs" / "zsgnet.yaml")
    header = (tmp_path / "txt_logs" / "zsg.txt").read_text()
    assert '"arch": "zsgnet"' in header and "trn_cls_ls" in header and "att_ls" not in header.split("\n\n")[1]
