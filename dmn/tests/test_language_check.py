"""The language check's parts: the referred-first comparison, the every-shape baseline, the two-stage runs."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch

from dmn_pytorch.data.referit_loader import ReferDataset
from dmn_pytorch.language_check import every_shape_baseline, main, referred_first
from dmn_pytorch.models.checkpoint import read_state_dict


def test_referred_first_compares_mean_probabilities():
    prob = torch.zeros(4, 4)
    prob[0, :2] = 0.9
    prob[3, :] = 0.5
    target = torch.zeros(4, 4, dtype=torch.bool)
    target[0, :2] = True
    other = torch.zeros(4, 4, dtype=torch.bool)
    other[3, :] = True
    assert referred_first(prob, target, [other])
    assert not referred_first(prob, other, [target])
    assert not referred_first(prob, target, [target.clone()])  # a tie is not a win


def test_every_shape_baseline_equals_the_loader_masks(toy_data, tmp_path):
    """Second computation of the baseline, from the mask files the data loader writes and reads."""
    dataset = ReferDataset(toy_data, split_root=tmp_path, dataset="unc", split="val")
    masks_of_image: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for index, (image_file, mask_file, _) in enumerate(dataset.images):
        masks_of_image[image_file][mask_file] = dataset.pull_item(index)[1] > 0
    inter = union = 0
    for image_file, mask_file, _ in dataset.images:
        shapes = torch.stack(list(masks_of_image[image_file].values())).any(dim=0)
        target = masks_of_image[image_file][mask_file]
        inter += int((target & shapes).sum())
        union += int((target | shapes).sum())
    assert every_shape_baseline(toy_data) == pytest.approx(inter / union, rel=1e-12)
    assert 0.1 < inter / union < 0.9  # several objects per image: the target is a real part of the union


def test_check_trains_low_then_high_res_and_reports(toy_data, tmp_path):
    out = tmp_path / "check"
    report = main(["--data", str(toy_data), "--out", str(out), "--low-res-epochs", "2", "--high-res-epochs", "2",
                   "--epoch-steps", "2", "--size", "64", "--variants", "per_pixel", "--no-cuda"])
    assert json.loads((out / "language_check.json").read_text()) == report
    assert report["every_shape_baseline"] == pytest.approx(every_shape_baseline(toy_data))
    stages = report["variants"]["per_pixel"]
    for stage in ("low_res", "high_res"):
        assert len(stages[stage]["curve"]) == 2
        assert stages[stage]["best_val_iou"] == max(stages[stage]["curve"])
        assert 0.0 <= stages[stage]["referred_first_rate"] <= 1.0
        assert stages[stage]["cpu_seconds"] > 0
    assert report["per_pixel_margin_over_baseline"] == pytest.approx(
        stages["high_res"]["best_val_iou"] - report["every_shape_baseline"])
    assert report["passes"] == (report["per_pixel_margin_over_baseline"] >= 0.15)
    # The high-res stage started from the low-res weights: 4 Adam steps at lr 5e-4 move each weight by < 0.003,
    # while a fresh initialisation (the high-res stage runs with the next seed) would differ by O(1).
    low = read_state_dict(out / "per_pixel" / "low_res" / "dmn_best_weights.pth")
    high = read_state_dict(out / "per_pixel" / "high_res" / "dmn_best_weights.pth")
    assert "langvis.output_collapse.weight" in low and "upsample.out_layer.weight" in high
    assert "langvis.output_collapse.weight" not in high
    assert (high["langvis.emb.weight"] - low["langvis.emb.weight"]).abs().max() < 0.02
