"""Box IoU and grounding accuracy (ZSGNet/GIN conventions): hand-checked values and the eval_script format."""

import pickle

import numpy as np
import pytest
import torch

from shared_eval.boxes import (EVAL_SCRIPT, TRAIN_EVALUATOR, box_iou, boxes_to_pixels, evaluate_prediction_file,
                               grounding_accuracy, paired_box_iou)

pytestmark = pytest.mark.parity


def test_hand_checked_ious():
    gt = [[0, 0, 10, 10]]
    preds = [[0, 0, 10, 10], [0, 0, 10, 5], [5, 5, 15, 15], [10, 0, 20, 10], [20, 20, 30, 30], [2, 2, 4, 4]]
    iou = box_iou(preds, gt)[:, 0]
    assert iou.dtype == torch.float32
    expected = [1.0, 0.5, 25 / 175, 0.0, 0.0, 4 / 100]  # no +1: areas are (x2 - x1) * (y2 - y1)
    np.testing.assert_allclose(iou.numpy(), expected, rtol=1e-6, atol=0)
    assert iou[3] == 0 and iou[4] == 0  # touching and disjoint boxes


def test_exact_half_stays_half_in_float32():
    iou = paired_box_iou([[0, 0, 10, 10]], [[0, 0, 10, 5]])
    assert iou.item() == 0.5  # the 1e-8 is absorbed in float32; in float64 it would be 0.4999999975
    assert 50.0 / (100.0 + 1e-8) < 0.5
    assert grounding_accuracy([[0, 0, 10, 10]], [[0, 0, 10, 5]], rule=EVAL_SCRIPT) == 0.0  # IoU > 0.5
    assert grounding_accuracy([[0, 0, 10, 10]], [[0, 0, 10, 5]], rule=TRAIN_EVALUATOR) == 1.0  # IoU >= 0.5


def test_empty_prediction_and_empty_ground_truth():
    assert paired_box_iou([[5, 5, 5, 5]], [[0, 0, 10, 10]]).item() == 0.0  # zero-area prediction
    assert paired_box_iou([[0, 0, 10, 10]], [[5, 5, 5, 5]]).item() == 0.0  # zero-area ground truth
    assert paired_box_iou([[5, 5, 5, 5]], [[5, 5, 5, 5]]).item() == 0.0  # 0 / (0 + 1e-8)
    assert grounding_accuracy([], []) == 0.0


def test_pairwise_matches_paired_and_float64_reference():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    a = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 50 + 1], 1)
    xy = torch.rand(50, 2, generator=g) * 100
    b = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 50 + 1], 1)
    full = box_iou(a, b)
    assert full.shape == (50, 50)
    assert torch.equal(torch.diagonal(full), paired_box_iou(a, b))
    a64, b64 = a.double().numpy(), b.double().numpy()
    lt = np.maximum(a64[:, None, :2], b64[None, :, :2])
    rb = np.minimum(a64[:, None, 2:], b64[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    ref = inter / (area(a64)[:, None] + area(b64)[None] - inter)
    np.testing.assert_allclose(full.numpy(), ref, rtol=0, atol=1e-6)


def test_boxes_to_pixels_from_normalised_yxyx():
    out = boxes_to_pixels([[-1, -1, 1, 1], [0, -0.5, 0.5, 0]], (100, 200))  # img_size is (h, w)
    assert out.tolist() == [[0, 0, 200, 100], [50, 50, 100, 75]]


def test_eval_script_prediction_file(tmp_path):
    gt = tmp_path / "test.csv"
    gt.write_text('img_id,bbox,query\n'
                  'a,"[0, 0, 10, 10]",x\n'
                  'b,"[0, 0, 10, 10]",y\n'
                  'c,"[0, 0, 10, 10]",z\n'
                  'd,"[10, 10, 20, 20]",w\n')
    preds = [{"id": 0, "pred_boxes": [0.0, 0.0, 10.0, 10.0], "pred_scores": 1},
             {"id": 1, "pred_boxes": [0.0, 0.0, 10.0, 5.0], "pred_scores": 1},  # exactly 0.5
             {"id": 0, "pred_boxes": [50.0, 50.0, 60.0, 60.0], "pred_scores": 1},  # repeated id: ignored
             {"id": 3, "pred_boxes": [11.0, 11.0, 20.0, 20.0], "pred_scores": 1}]  # 0.81
    pf = tmp_path / "preds.pkl"
    pf.write_bytes(pickle.dumps(preds))
    assert evaluate_prediction_file(pf, gt) == (2 / 3, 2, 3)
    assert evaluate_prediction_file(pf, gt, rule=TRAIN_EVALUATOR) == (1.0, 3, 3)
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        evaluate_prediction_file(tmp_path / "missing.pkl", gt)


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou([[1, 2, 3]], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="same shape"):
        paired_box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 2, 2]])
