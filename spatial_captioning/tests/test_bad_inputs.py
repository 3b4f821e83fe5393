"""Bad input, as a careless user makes it: train.py / eval.py stop with one line naming the file and the fix (exit 2,
no traceback, also not from a DataLoader worker) and leave the files already in their output folder as they were;
--skip_corrupt skips corrupt images instead, logging each one and the count."""
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from toy_runs import TINY, data_args, train

SUBPROJECT = Path(__file__).resolve().parents[1]


def first_image(toy: Path, split: str) -> int:
    images = json.loads((toy / "cocotalk.json").read_text())["images"]
    return next(img["id"] for img in images if img["split"] == split)


def feature_copy(toy: Path, dst: Path) -> Path:
    shutil.copytree(toy / "cocobu_att", dst)
    return dst


def output_folder(path: Path, names: tuple[str, ...]) -> Path:
    """An output folder that already holds files from an earlier run."""
    for name in names:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(f"earlier run: {name}".encode())
    return path


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def train_case(toy: Path, tmp: Path, *extra: str) -> tuple[str, list[str], Path, Path]:
    ckpt = output_folder(tmp / "ckpt", ("model.pth", "infos_e.pkl", "histories_e.pkl"))
    argv = ["--id", "e", "--checkpoint_path", str(ckpt), *data_args(toy), *TINY, "--max_epochs", "1", *extra]
    return "train.py", argv, tmp, ckpt


def eval_case(toy: Path, xe_run: Path, tmp: Path, *extra: str) -> tuple[str, list[str], Path, Path]:
    out = output_folder(tmp / "out", ("vis/vis.json", "eval_results/xe_test.json"))
    argv = ["--device", "cpu", "--model", str(xe_run / "model.pth"), "--infos_path", str(xe_run / "infos_xe.pkl"),
            *data_args(toy)[2:10], "--dump_images", "0", "--beam_size", "1", *extra]
    return "eval.py", argv, out, out


def truncated_label_h5(toy, xe_run, tmp):
    bad = tmp / "cocotalk_label.h5"
    data = (toy / "cocotalk_label.h5").read_bytes()
    bad.write_bytes(data[:len(data) // 2])
    return (*train_case(toy, tmp, "--input_label_h5", str(bad)), [str(bad), "prepro_labels.py"])


def labels_flattened(toy, xe_run, tmp):
    bad = tmp / "cocotalk_label.h5"
    with h5py.File(toy / "cocotalk_label.h5") as src, h5py.File(bad, "w") as dst:
        for key in src:
            dst[key] = src[key][:].reshape(-1) if key == "labels" else src[key][:]
    return (*train_case(toy, tmp, "--input_label_h5", str(bad)), [str(bad), "labels", "prepro_labels.py"])


def corrupt_npz_in_a_worker(toy, xe_run, tmp):
    feats = feature_copy(toy, tmp / "att")
    victim = feats / f"{first_image(toy, 'train')}.npz"
    victim.write_bytes(b"PK\x03\x04 not a zip archive")
    case = train_case(toy, tmp, "--input_img_feat_dir", str(feats), "--num_workers", "1")
    return (*case, [str(victim), "--skip_corrupt"])


def features_of_the_wrong_width(toy, xe_run, tmp):
    feats = feature_copy(toy, tmp / "att")
    victim = feats / f"{first_image(toy, 'test')}.npz"
    np.savez_compressed(victim, feat=np.zeros((4, 1024), np.float32))
    return (*eval_case(toy, xe_run, tmp, "--input_img_feat_dir", str(feats)), [str(victim), "--img_feat_size 2048"])


def infos_path_is_a_pth(toy, xe_run, tmp):
    case = eval_case(toy, xe_run, tmp, "--infos_path", str(xe_run / "model.pth"))
    return (*case, [str(xe_run / "model.pth"), "infos_<id>.pkl"])


def checkpoint_path_under_a_file(toy, xe_run, tmp):
    script, argv, cwd, out = train_case(toy, tmp)
    blocked = out / "model.pth" / "run"  # a file stands where a folder must be made
    argv[argv.index("--checkpoint_path") + 1] = str(blocked)
    return script, argv, cwd, out, [str(blocked), "folder you can write to"]


CASES = [truncated_label_h5, labels_flattened, corrupt_npz_in_a_worker, features_of_the_wrong_width,
         infos_path_is_a_pth, checkpoint_path_under_a_file]


@pytest.mark.parametrize("make_case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(make_case, toy_dir, xe_run, tmp_path):
    script, argv, cwd, out, expected = make_case(toy_dir, xe_run, tmp_path)
    before = snapshot(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SUBPROJECT.parent)}
    r = subprocess.run([sys.executable, str(SUBPROJECT / script), *argv], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert all(word in last for word in expected), last
    assert snapshot(out) == before
    if make_case is checkpoint_path_under_a_file:
        assert " loss " not in r.stderr  # stopped before the first training step


def test_skip_corrupt_skips_logs_and_counts(toy_dir, tmp_path, caplog):
    feats = feature_copy(toy_dir, tmp_path / "att")
    victims = [feats / f"{img['id']}.npz" for img in json.loads((toy_dir / "cocotalk.json").read_text())["images"]
               if img["split"] == "train"][:2]
    victims[0].write_bytes(b"garbage")
    np.savez_compressed(victims[1], feat=np.zeros((4, 7), np.float32))
    caplog.set_level(logging.WARNING)
    result = train(toy_dir, tmp_path / "ckpt", "s", "--input_img_feat_dir", str(feats), "--skip_corrupt", "1",
                   "--max_epochs", "1")
    assert result["iter"] > 0 and (tmp_path / "ckpt" / "model.pth").is_file()
    skipped = [r.getMessage() for r in caplog.records if "--skip_corrupt: skipping" in r.getMessage()]
    assert len(skipped) == 2 and all(any(str(v) in m for m in skipped) for v in victims)
    assert any("2 corrupt image(s) skipped" in r.getMessage() for r in caplog.records)
