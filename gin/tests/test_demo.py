"""The demo end to end on the small toy set (one short epoch): result keys, baseline, figures."""
import json

import pytest
from PIL import Image

import demo
import eval_script
from baselines import toy_baselines


def test_demo_writes_result_with_baseline_and_a_readable_figure(small_toy, tmp_path):
    # One epoch (10 batches of the small toy set) and the evaluations.
    summary = demo.main(["--out", str(tmp_path), "--toy", str(small_toy), "--toy_seed", "3", "--epochs", "1"])
    written = json.loads((tmp_path / "demo_result.json").read_text())
    assert written == summary
    baselines = toy_baselines(small_toy, "test", seed=3)
    assert written["baselines"] == pytest.approx(baselines)
    assert (written["baseline_name"], written["baseline"]) == max(baselines.items(), key=lambda item: item[1])
    assert written["lower_is_better"] is False and written["epochs"] == 1
    acc, _, total = eval_script.evaluate(tmp_path / "tmp" / "predictions" / "demo" / "test0_preds.pkl",
                                         small_toy / "csv_dir" / "test.csv")
    assert total == 32 and written["after"] == acc
    assert written["figures"][0].endswith("predictions.png")
    with Image.open(written["figures"][0]) as composite:
        assert composite.width >= 800
    assert all(Image.open(f).width > 0 for f in written["figures"])
