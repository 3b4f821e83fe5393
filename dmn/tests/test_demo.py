"""The demo's result file (metric, baseline on the same split, figures) and its choice of figure samples."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from dmn_pytorch.data.referit_loader import ReferDataset
from dmn_pytorch.demo import figure_samples, main
from dmn_pytorch.language_check import every_shape_baseline


def test_figure_samples_are_two_queries_naming_different_objects_of_one_image(toy_data, tmp_path):
    dataset = ReferDataset(toy_data, split_root=tmp_path, dataset="unc", split="val")
    chosen = figure_samples(dataset, 3)
    assert len(chosen) == 6
    for first, second in zip(chosen[::2], chosen[1::2]):
        (image_a, mask_a, _), (image_b, mask_b, _) = dataset.images[first], dataset.images[second]
        assert image_a == image_b and mask_a != mask_b


def test_demo_writes_result_against_the_baseline_and_readable_figures(toy_data, tmp_path):
    """Two steps per stage at size 64 (~10 CPU s): the contract of demo_result.json, not the learning."""
    out = tmp_path / "demo"
    result = main(["--data", str(toy_data), "--out", str(out), "--size", "64", "--low-res-epochs", "1",
                   "--low-res-steps", "2", "--high-res-steps", "2"])
    assert json.loads((out / "demo_result.json").read_text()) == result
    assert result["baseline"] == pytest.approx(every_shape_baseline(toy_data, "val"), rel=1e-12)
    assert result["lower_is_better"] is False and result["baseline_name"]
    evaluations = json.loads((out / "weights" / "high_res" / "eval_unc_val.json").read_text())["evaluations"]
    assert result["after"] == evaluations[-1]["max_iou"]
    untrained = json.loads((out / "weights" / "untrained" / "eval_unc_val.json").read_text())["evaluations"]
    assert result["before"] == untrained[0]["max_iou"]
    assert set(result["cpu_seconds_per_stage"]) == {"untrained", "low_res", "high_res"}
    assert (out / "weights" / "low_res" / "dmn_best_weights.pth").exists()
    assert len(result["figures"]) == 2
    for figure in result["figures"]:
        with Image.open(figure) as image:
            assert image.width >= 800


@pytest.mark.slow
def test_default_demo_beats_the_query_blind_baseline(toy_data_default, tmp_path):
    """The demo as `make dmn-demo` runs it (~330 CPU s): measured 0.538 vs baseline 0.344 (seed 1111)."""
    result = main(["--data", str(toy_data_default), "--out", str(tmp_path / "demo")])
    assert result["after"] >= result["baseline"] + 0.1
