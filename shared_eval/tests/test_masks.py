"""DMN mask metrics: hand-checked intersections/unions, float32 thresholds, empty masks, soft ground truth."""

import numpy as np
import pytest
import torch

from shared_eval.masks import PRECISION_AT, THRESHOLDS, MaskIoU

pytestmark = pytest.mark.parity


def test_threshold_grid_is_dmns():
    assert len(THRESHOLDS) == 39
    assert THRESHOLDS[0] == 0.0 and THRESHOLDS[20] == 0.5
    assert THRESHOLDS[38] == 0.9500000000000001  # np.arange artefact, kept
    assert PRECISION_AT == (0.5, 0.6, 0.7, 0.8, 0.9)


def test_hand_checked_sample():
    m = MaskIoU()
    gt = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    prob = torch.tensor([[0.9, 0.6], [0.1, 0.0]])
    m.update_probabilities(prob, gt)
    r = m.compute()
    assert m.cum_i[0] == 1 and m.cum_u[0] == 3  # t = 0: every positive probability is predicted
    assert m.cum_i[20] == 1 and m.cum_u[20] == 2  # t = 0.5: 0.9 and 0.6
    assert m.cum_i[38] == 0 and m.cum_u[38] == 1  # t = 0.95: nothing predicted
    assert r.overall_iou[20] == 0.5
    assert r.precision[0.5][20] == 1.0  # I/U >= 0.5 is non-strict
    assert r.precision[0.6][20] == 0.0
    assert r.best_overall_iou == 1.0 and r.best_threshold == THRESHOLDS[r.best_index]
    assert np.isclose(r.overall_iou[r.best_index], 1.0)


def test_thresholds_are_strict_and_compared_in_float32():
    m = MaskIoU()
    gt = torch.ones(1, 3)
    m.update_probabilities(torch.tensor([[0.5, np.float32(0.95), 0.9500001]]), gt)
    assert m.cum_i[20] == 2  # 0.5 is not > 0.5
    assert m.cum_i[38] == 1  # float32(0.95) is not > float32(0.9500000000000001); 0.9500001 is


def test_empty_union_fails_precision_and_counts_zero_in_mean():
    m = MaskIoU()
    m.update_probabilities(torch.zeros(2, 2), torch.zeros(2, 2))  # empty prediction and empty ground truth
    m.update_probabilities(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))  # perfect
    r = m.compute()
    assert r.precision[0.9][20] == 0.5  # the empty sample fails every k
    assert r.mean_iou[20] == 0.5
    assert r.overall_iou[20] == 1.0  # cumulative: the empty sample adds nothing


def test_soft_ground_truth_gives_soft_sums():
    m = MaskIoU()
    m.update_probabilities(torch.tensor([[0.8, 0.8]]), torch.tensor([[0.5, 0.25]]))
    # t = 0.5: pred = [1, 1]; I = 0.75; U = sum(1 + g - g) = 2
    assert m.cum_i[20] == 0.75 and m.cum_u[20] == 2.0


def test_cumulative_iou_over_different_sizes():
    m = MaskIoU()
    m.update_probabilities(torch.tensor([[0.9, 0.9, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # 1 / 2
    m.update_probabilities(torch.full((3, 3), 0.9), torch.ones(3, 3))  # 9 / 9
    r = m.compute()
    assert r.overall_iou[20] == 10 / 11
    assert r.mean_iou[20] == 0.75


@pytest.mark.parametrize("align_corners", [True, False])
def test_sigmoid_then_bilinear_upsampling(align_corners):
    m = MaskIoU(align_corners=align_corners)
    logits = torch.tensor([[-10.0, 10.0]])  # left column off, right on
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)
    prob = m.probabilities(logits[None], (2, 4))[0]
    assert prob.shape == (2, 4)
    assert prob[0, 0] < 0.01 and prob[0, 3] > 0.99
    m.update(logits, gt)
    assert m.cum_i[20] == 4 and m.cum_u[20] == 4
    with pytest.raises(ValueError, match="logits and gt"):
        m.update(torch.zeros(2, 3, 3), torch.zeros(3, 3, 3))


def test_compute_without_samples_is_an_error():
    with pytest.raises(ValueError, match="before any update"):
        MaskIoU().compute()
