"""The demo end to end on the small toy set (one short epoch per model): result keys, baseline, figures, and the ZSGNet
baseline's checkpoint, which `make tables TOY=1` evaluates through main_dist with configs/zsgnet.yaml."""
import json

import pytest
from PIL import Image

import demo
import eval_script
import main_dist
from baselines import toy_baselines
from config import parse_argv
from util.checkpoint import read_checkpoint

from conftest import toy_flags


@pytest.fixture(scope="module")
def demo_out(small_toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # One epoch each (10 batches of the small toy set) and the evaluations.
    summary = demo.main(["--out", str(out), "--toy", str(small_toy), "--toy_seed", "3", "--epochs", "1",
                         "--zsgnet_epochs", "1"])
    return out, summary


def test_demo_writes_result_with_baseline_and_a_readable_figure(demo_out, small_toy):
    out, summary = demo_out
    written = json.loads((out / "demo_result.json").read_text())
    assert written == summary
    baselines = toy_baselines(small_toy, "test", seed=3)
    assert written["baselines"] == pytest.approx(baselines)
    assert (written["baseline_name"], written["baseline"]) == max(baselines.items(), key=lambda item: item[1])
    assert written["lower_is_better"] is False and written["epochs"] == 1
    acc, _, total = eval_script.evaluate(out / "tmp" / "predictions" / "demo" / "test0_preds.pkl",
                                         small_toy / "csv_dir" / "test.csv")
    assert total == 32 and written["after"] == acc
    assert written["figures"][0].endswith("predictions.png")
    with Image.open(written["figures"][0]) as composite:
        assert composite.width >= 800
    assert all(Image.open(f).width > 0 for f in written["figures"])


def test_demo_zsgnet_stage_leaves_a_checkpoint_that_main_dist_loads_with_the_zsgnet_config(demo_out, small_toy,
                                                                                          tmp_path):
    out, summary = demo_out
    checkpoint = out / "tmp" / "models" / "demo_zsgnet.pth"
    zsgnet = summary["zsgnet"]
    assert zsgnet["checkpoint"] == str(checkpoint) and zsgnet["epochs"] == 1 and len(zsgnet["val_acc"]) == 1
    acc, _, total = eval_script.evaluate(out / "tmp" / "predictions" / "demo_zsgnet" / "test0_preds.pkl",
                                         small_toy / "csv_dir" / "test.csv")
    assert total == 32 and zsgnet["after"] == acc
    more = summary["more_rows"][0]  # its row of the make demo table, against GIN's strongest baseline
    assert (more["before"], more["after"], more["baseline"]) == (zsgnet["before"], acc, summary["baseline"])
    saved = read_checkpoint(checkpoint)
    assert json.loads(saved["cfgtxt"])["arch"] == "zsgnet" and saved["num_epoch"] == 1  # trained, not a fresh model
    # as the zsgnet rows of make tables TOY=1 run it: a strict load, so GIN's keys (AFS, GARAN) would be refused
    _, overrides = parse_argv(["zsg_referit", *toy_flags(small_toy, tmp_path), "--resume=True", "--only_val=True",
                               "--only_test=True", f"--resume_path={checkpoint}"])
    results = main_dist.main_dist("zsg_referit", overrides, demo.ZSGNET_CFG)
    assert set(results) == {"valid", "test"}
    _, _, total = eval_script.evaluate(tmp_path / "predictions" / "zsg_referit" / "test0_preds.pkl",
                                       small_toy / "csv_dir" / "test.csv")
    assert total == 32


def test_a_run_whose_val_acc_stays_0_still_leaves_its_checkpoint(small_toy, tmp_path):
    # no epoch at all: Run saves none, so the demo saves the model it evaluates (make tables TOY=1 needs the file)
    result = demo.train_briefly(small_toy, tmp_path, cfg_file=demo.ZSGNET_CFG, uid="untrained",
                                extra={"epochs": "0"})
    assert result["run"].history == []
    saved = read_checkpoint(tmp_path / "models" / "untrained.pth")
    assert json.loads(saved["cfgtxt"])["arch"] == "zsgnet" and saved["num_epoch"] == 0
