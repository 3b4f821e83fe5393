"""Anchors, matching, box coding, the loss's focal weighting, decoding and eval_script counting."""
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import eval_script
from config import anchor_ratios_scales, load_config
from models.anchors import box_iou, create_anchors, create_grid, decode, encode, match_anchors
from models.evaluator import Evaluator, to_pixels
from models.loss import ZSGLoss

RATIOS, SCALES = anchor_ratios_scales(load_config())


def test_anchor_layout_level_row_column_anchor_in_yx():
    anchors = create_anchors([(2, 3), (1, 1)], RATIOS, SCALES).float()
    assert anchors.shape == (9 * (6 + 1), 4)
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).view(-1, 9, 2)
    # level 0 has 2 rows x 3 columns: y from -1/2 to 1/2, x from -2/3 to 2/3; row-major, 9 anchors per cell.
    assert torch.allclose(centres[1, 0], torch.tensor([-0.5, 0.0]))
    assert torch.allclose(centres[2, 0], torch.tensor([-0.5, 2 / 3]))
    assert torch.allclose(centres[3, 0], torch.tensor([0.5, -2 / 3]))
    assert torch.allclose(centres[6], torch.zeros(9, 2))  # the 1x1 level sits at the centre
    hw = (anchors[:, 2:] - anchors[:, :2])[:9]
    # ratio 1/2 first (outer), scale 4 first (inner): h = 4*sqrt(1/2)*2/2 cells of a 2-row level, w = 4*sqrt(2)*2/3.
    assert torch.allclose(hw[0], torch.tensor([4 * math.sqrt(0.5), 4 * math.sqrt(2) * 2 / 3]), atol=1e-6)
    assert torch.allclose(hw[1, 0], torch.tensor(4 * 2 ** (1 / 3) * math.sqrt(0.5)), atol=1e-6)
    assert create_grid(1, 1).tolist() == [[[0.0, 0.0]]]


def test_encode_decode_round_trip():
    anchors = create_anchors([(4, 4)], RATIOS, SCALES)
    boxes = torch.tensor([[-0.5, -0.2, 0.3, 0.6], [0.1, -0.9, 0.8, -0.1]], dtype=torch.float64)
    deltas = encode(anchors, boxes)
    assert deltas.shape == (2, len(anchors), 4)
    for i in range(2):
        assert torch.allclose(decode(anchors, deltas[i]), boxes[i].expand(len(anchors), 4), atol=1e-5)


def test_matching_iou_above_threshold_plus_best_anchor():
    anchors = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0.9], [0, 0, 0.5, 0.5], [2, 2, 3, 3.0]])
    gt = torch.tensor([[0, 0, 1, 0.95], [2.5, 2.5, 3.5, 3.5]])
    pos, best = match_anchors(anchors, gt, threshold=0.6)
    # gt 0: IoU 0.95, 0.947.., 0.26, 0 -> two positives; gt 1: best IoU 1/7 < 0.6, still positive as best anchor.
    assert pos.tolist() == [[True, True, False, False], [False, False, False, True]]
    assert best.tolist() == [0, 3]
    pos_only_best, _ = match_anchors(anchors, gt, threshold=0.6, use_multi=False)
    assert pos_only_best.sum().item() == 2


def test_focal_weights_alpha_on_negatives_and_box_loss_on_positives():
    anchors = create_anchors([(1, 1)], RATIOS, SCALES)
    loss_fn = ZSGLoss(RATIOS, SCALES, use_att_loss=False)
    gt = anchors[4:5].float()  # exactly anchor 4
    scores = torch.linspace(-2, 2, 9).view(1, 9, 1)
    deltas = torch.full((1, 9, 4), 0.1)
    out = {"att_out": scores, "bbx_out": deltas, "feat_sizes": torch.tensor([[1, 1]]), "num_f_out": torch.tensor([1])}
    got = loss_fn(out, {"annot": gt})
    pos, _ = match_anchors(anchors, gt, 0.6)
    t = pos.float()[0]
    p = torch.sigmoid(scores.view(-1))
    w = torch.where(t > 0, 0.75 * (1 - p) ** 2, 0.25 * p ** 2)
    expected_cls = (w * F.binary_cross_entropy_with_logits(scores.view(-1), t, reduction="none")).sum() / t.sum()
    assert torch.allclose(got["cls_ls"], expected_cls)
    target = encode(anchors, gt.double())[0]
    per_anchor = F.smooth_l1_loss(deltas[0], target, reduction="none").sum(1)
    assert torch.allclose(got["box_ls"], (per_anchor * t).sum() / t.sum())
    assert torch.allclose(got["loss"], got["box_ls"] + got["cls_ls"])


def test_evaluator_decodes_best_scoring_anchor_without_nms():
    anchors = create_anchors([(2, 2)], RATIOS, SCALES)
    scores = torch.full((1, 36, 1), -5.0)
    scores[0, 20] = 3.0
    deltas = torch.zeros(1, 36, 4)
    out = {"att_out": scores, "bbx_out": deltas, "feat_sizes": torch.tensor([[2, 2]]), "num_f_out": torch.tensor([1])}
    gt = anchors[20:21].float()
    batch = {"annot": gt, "idxs": torch.tensor([7.0]), "img_size": torch.tensor([[100.0, 200.0]])}
    res = Evaluator(RATIOS, SCALES)(out, batch)
    assert res["Acc"].item() == 1.0
    y1, x1, y2, x2 = gt[0].tolist()
    expected = [(x1 + 1) / 2 * 200, (y1 + 1) / 2 * 100, (x2 + 1) / 2 * 200, (y2 + 1) / 2 * 100]
    assert torch.allclose(res["pred_boxes"][0], torch.tensor(expected, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(res["pred_scores"], torch.sigmoid(torch.tensor([3.0])))
    assert torch.allclose(to_pixels(torch.tensor([[-1.0, -1.0, 1.0, 1.0]]), torch.tensor([[100.0, 200.0]])),
                          torch.tensor([[0.0, 0.0, 200.0, 100.0]]))


def write_case(tmp_path, preds, gt_boxes):
    gt = tmp_path / "gt.csv"
    gt.write_text("img_id,bbox,query\n" + "".join(f'{i}.jpg,"{b}",thing\n' for i, b in enumerate(gt_boxes)))
    pf = tmp_path / "preds.pkl"
    pf.write_bytes(pickle.dumps(preds))
    return pf, gt


def test_eval_script_counting_hand_cases(tmp_path):
    gt_boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]
    preds = [
        {"id": 0, "pred_boxes": [0, 0, 10, 10]},   # IoU 1 -> correct
        {"id": 1, "pred_boxes": [0, 0, 10, 5]},    # IoU exactly 0.5 -> NOT correct (strict >)
        {"id": 2, "pred_boxes": [0, 0, 10, 6]},    # IoU 0.6 -> correct
        {"id": 0, "pred_boxes": [50, 50, 60, 60]},  # repeated id: ignored (first one counts)
        {"id": 3, "pred_boxes": [10, 0, 20, 10]},  # touching -> 0
    ]
    pf, gt = write_case(tmp_path, preds, gt_boxes)
    assert eval_script.evaluate(pf, gt) == (0.5, 2, 4)
    assert eval_script.evaluate(pf, gt, acc_iou_thresh=0.4) == (0.75, 3, 4)
    # Denominator = distinct ids in the pickle, not the CSV length.
    pf2, _ = write_case(tmp_path, preds[:1], gt_boxes)
    assert eval_script.evaluate(pf2, gt) == (1.0, 1, 1)


def test_eval_script_merges_rank_files(tmp_path):
    gt_boxes = [[0, 0, 10, 10]] * 3
    _, gt = write_case(tmp_path, [], gt_boxes)
    (tmp_path / "0_p.pkl").write_bytes(pickle.dumps([{"id": 0, "pred_boxes": [0, 0, 10, 10]}, {"id": 2, "pred_boxes": [0, 0, 1, 1]}]))
    (tmp_path / "1_p.pkl").write_bytes(pickle.dumps([{"id": 1, "pred_boxes": [0, 0, 10, 10]}, {"id": 0, "pred_boxes": [0, 0, 1, 1]}]))
    assert eval_script.evaluate(tmp_path / "p.pkl", gt, num_gpus=2) == (2 / 3, 2, 3)
    assert (tmp_path / "p.pkl").is_file()


def test_eval_script_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        eval_script.main([str(tmp_path / "none.pkl"), str(tmp_path / "gt.csv")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "none.pkl" in err and err.count("\n") == 1


def test_box_iou_matches_numpy_on_random_boxes():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(-1, 1, (20, 2, 2)), axis=1).reshape(20, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(-1, 1, (15, 2, 2)), axis=1).reshape(15, 4)[:, [0, 2, 1, 3]]
    got = box_iou(torch.tensor(a), torch.tensor(b)).numpy()
    for i in range(20):
        for j in range(15):
            ih = max(0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            iw = max(0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            inter = ih * iw
            union = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            assert abs(got[i, j] - inter / (union + 1e-8)) < 1e-9


def test_eval_script_agrees_with_shared_eval_reference(tmp_path):
    from shared_eval.boxes import evaluate_prediction_file

    rng = np.random.default_rng(1)
    gt_boxes = [[float(x), float(y), float(x + w), float(y + h)] for x, y, w, h in rng.uniform(1, 60, (50, 4))]
    preds = [{"id": int(i), "pred_boxes": [v + float(rng.normal(0, 4)) for v in gt_boxes[i]]} for i in rng.integers(0, 50, 80)]
    pf, gt = write_case(tmp_path, preds, gt_boxes)
    assert eval_script.evaluate(pf, gt) == evaluate_prediction_file(pf, gt)
