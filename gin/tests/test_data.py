"""The CSV loader on the toy data (same code path as ReferIt), attention targets against a direct transcription of the
original loop, and the one-line errors for bad inputs."""
import numpy as np
import pandas as pd
import pytest
import torch

import main_dist
from config import load_config, merge_overrides
from data.iou_targets import iou_groundtruth
from data.loader import ImgQuDataset, collater
from data.word_vectors import hashed_vector, load_word_vectors
from errors import DataError

from conftest import toy_flags


def original_iou_map(grid: int, centre, size):
    """The original generate_iou_groundtruth loop, written out from the spec for comparison."""
    t_w, t_h = size
    t_x, t_y = centre
    gt = [t_x - t_w / 2, t_y - t_h / 2, t_x + t_w / 2, t_y + t_h / 2]
    out = np.zeros([grid, grid])
    for i in range(grid):
        for j in range(grid):
            b = [max(i - t_w / 2, 0.0), max(j - t_h / 2, 0.0), min(i + t_w / 2, grid), min(j + t_h / 2, grid)]
            inter = max(min(gt[3], b[3]) - max(gt[1], b[1]), 0.0) * max(min(gt[2], b[2]) - max(gt[0], b[0]), 0.0)
            union = (gt[2] - gt[0]) * (gt[3] - gt[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            out[i, j] = (inter + 1e-7) / (union + 1e-7)
    return out


@pytest.mark.parametrize("box", [(0.1, 0.5, 0.4, 0.9), (0.0, 0.0, 1.0, 1.0), (0.7, 0.05, 0.95, 0.2)])
def test_iou_targets_equal_original_loop(box):
    y1, x1, y2, x2 = (np.array(box) * 320).tolist()
    expected = original_iou_map(40, [(y1 + y2) / 16, (x1 + x2) / 16], [(y2 - y1) / 16, (x2 - x1) / 16])
    maps = iou_groundtruth(np.array(box), 320)
    assert np.array_equal(maps[0], expected)
    assert maps[1].shape == (20, 20) and maps[2].shape == (10, 10)
    # Indexed [row=y][col=x]: the peak lies at the box centre in (y, x) order.
    peak = np.unravel_index(maps[0].argmax(), maps[0].shape)
    assert abs(peak[0] - (y1 + y2) / 16) <= 1 and abs(peak[1] - (x1 + x2) / 16) <= 1


def test_hash_vectors_are_deterministic_and_distinct():
    a, b = hashed_vector("red", 300), hashed_vector("red", 300)
    assert a.dtype == np.float32 and a.shape == (300,) and np.array_equal(a, b)
    assert not np.allclose(a, hashed_vector("blue", 300))


def test_toy_csv_loads_through_the_referit_loader(small_toy):
    words = load_word_vectors("hash", 300)
    ds = ImgQuDataset(small_toy / "csv_dir" / "train_flat.csv", small_toy / "saiapr_tc12_images", words, resize=128)
    item = ds[0]
    assert item["img"].shape == (3, 128, 128) and 0 <= item["img"].min() and item["img"].max() <= 1
    assert item["qvec"].shape == (50, 300)
    df = pd.read_csv(small_toy / "csv_dir" / "train_flat.csv")
    q = df["query"].iloc[0]
    assert item["qlens"].item() == len(q.split())
    assert np.allclose(item["qvec"][0].numpy(), hashed_vector(q.split()[0], 300))
    assert np.allclose(item["qvec"][item["qlens"].item()].numpy(), hashed_vector("PD", 300))
    x1, y1, x2, y2 = eval(df["bbox"].iloc[0])
    h, w = item["img_size"].tolist()
    assert (h, w) == (120, 160)
    assert torch.allclose(item["annot"], torch.tensor([2 * y1 / h - 1, 2 * x1 / w - 1, 2 * y2 / h - 1, 2 * x2 / w - 1]))
    batch = collater([ds[0], ds[1], ds[2]])
    assert batch["qvec"].shape == (3, int(batch["qlens"].max()), 300)
    assert batch["iou_annot_stage_0"].shape == (3, 16, 16) and batch["iou_annot_stage_2"].shape == (3, 4, 4)
    # train.csv holds phrase lists: one phrase is drawn per access.
    lists = ImgQuDataset(small_toy / "csv_dir" / "train.csv", small_toy / "saiapr_tc12_images", words, resize=128)
    assert isinstance(lists.data["query"].iloc[0], list) and lists.phrase(0) in lists.data["query"].iloc[0]


def run_main(args, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main_dist.main(args)
    assert exc.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("error: ") and message.count("\n") == 1
    return message.strip()


def test_bad_inputs_give_one_clear_line(small_toy, tmp_path, capsys):
    flags = toy_flags(small_toy, tmp_path / "out")
    assert "--no_such_key" in run_main(["u", *flags, "--no_such_key=1"], capsys)
    assert "valid keys" in run_main(["u", *flags, "--no_such_key=1"], capsys)
    assert "multiple of 32" in run_main(["u", *flags, "--resize_img=[300,300]"], capsys)
    assert "--bs" in run_main(["u", *flags, "--bs=abc"], capsys)
    message = run_main(["u", *flags, "--only_val=True", "--epochs=1"], capsys)
    assert "checkpoint" in message and "u.pth" in message
    assert "missing.pth" in run_main(["u", *flags, "--resume_path=/nowhere/missing.pth", "--only_test=True"], capsys)
    bad = tmp_path / "bad"
    (bad / "csv_dir").mkdir(parents=True)
    rows = pd.read_csv(small_toy / "csv_dir" / "val.csv")
    rows.loc[1, "bbox"] = "[1, 2, 3"
    rows.to_csv(bad / "csv_dir" / "val.csv", index=False)
    message = run_main(["u", *flags, f"--ds_info.toy.val_csv_file={bad}/csv_dir/val.csv"], capsys)
    assert "row 1" in message and "bbox" in message
    message = run_main(["u", *flags, f"--ds_info.toy.img_dir={bad}", "--epochs=1"], capsys)
    assert "not found" in message and str(bad) in message


def test_typed_merge_rules():
    cfg = load_config()
    got = merge_overrides(cfg, {"lr": "1", "resize_img": "[512, 512]", "use_multi": "False", "ds_info.refclef.img_dir": "/x"})
    assert got["lr"] == 1.0 and isinstance(got["lr"], float) and got["resize_img"] == [512, 512]
    assert got["use_multi"] is False and got["ds_info"]["refclef"]["img_dir"] == "/x"
    assert cfg["lr"] == 1e-4  # the defaults are not modified
    with pytest.raises(Exception, match="bool"):
        merge_overrides(cfg, {"use_multi": "1"})


def test_error_from_a_loader_worker_is_still_one_line(small_toy, tmp_path, capsys):
    flags = toy_flags(small_toy, tmp_path / "out") + [f"--ds_info.toy.img_dir={tmp_path}", "--nw=1", "--epochs=1"]
    message = run_main(["u", *flags], capsys)
    assert message.startswith("error: image ") and "not found" in message
