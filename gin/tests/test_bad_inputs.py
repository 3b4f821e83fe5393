"""Bad input (issue 18): code/main_dist.py and code/eval_script.py run as a user runs them, on corrupted copies of a
small toy set in the real CSV layout. Each case exits with code 2, prints no traceback (also none from a DataLoader
worker), ends stderr with one line naming the file (and row) and the fix, and leaves every file already in the output
folder as it was (the run's own logs may only grow). ``--skip_corrupt`` skips such samples, logging each and the count."""
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import main_dist
from config import load_config, merge_overrides
from models import build_model
from util.checkpoint import save_checkpoint

from conftest import ENV, GIN, NARROW, toy_flags

ROWS = 8  # rows per split: two toy images (four rows each)
LOGS = ("txt_logs", "ext_logs")  # append-only records of each run


def tiny_set(toy: Path, out: Path) -> Path:
    """The first ROWS rows of each split and their images, in the toy (= ReferIt) layout."""
    (out / "csv_dir").mkdir(parents=True)
    (out / "saiapr_tc12_images").mkdir()
    for split in ("train_flat", "val", "test"):
        rows = pd.read_csv(toy / "csv_dir" / f"{split}.csv").iloc[:ROWS]
        rows.to_csv(out / "csv_dir" / f"{split}.csv", index=False)
        for name in rows["img_id"]:
            shutil.copy(toy / "saiapr_tc12_images" / name, out / "saiapr_tc12_images" / name)
    return out


def corrupt_copy(good: Path, out: Path) -> Path:
    shutil.copytree(good, out)
    return out


def image_of(data: Path, split: str, row: int) -> Path:
    return data / "saiapr_tc12_images" / pd.read_csv(data / "csv_dir" / f"{split}.csv")["img_id"][row]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def set_query(data: Path, split: str, row: int, query: str) -> None:
    csv = data / "csv_dir" / f"{split}.csv"
    rows = pd.read_csv(csv)
    rows.loc[row, "query"] = query
    rows.to_csv(csv, index=False)


def previous_run(out: Path, checkpoint: Path) -> None:
    """What an earlier run of UID 'u' left in the output folder."""
    for folder in ("models", "predictions/u", "txt_logs", "ext_logs", "tb_logs/u"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, out / "models" / "u.pth")
    (out / "predictions" / "u" / "test0_preds.pkl").write_bytes(b"earlier predictions")
    (out / "txt_logs" / "u.txt").write_text("earlier txt log\n")
    (out / "ext_logs" / "u.txt").write_text("earlier ext log\n")
    (out / "tb_logs" / "u" / "events.out.tfevents.1").write_bytes(b"earlier events")


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def data_flags(data: Path, out: Path) -> list[str]:
    return toy_flags(data, out) + ["--lstm_init=zeros", "--bs=4", "--epochs=1"]


SUBPROCESS = ("truncated image, read in a loader worker", "output folder blocked by a file",
              "eval_script: garbage predictions file")  # the rest run in this process (same checks, less CPU)


@pytest.fixture(scope="module")
def matrix(small_toy, tmp_path_factory):
    """Every case set up (the subprocess ones already run, concurrently): name -> (command, expected texts in the last
    line, output folder, files there before, subprocess result or None)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    good = tiny_set(small_toy, root / "good")
    torch.manual_seed(0)
    cfg = merge_overrides(load_config(), dict(f[2:].split("=", 1) for f in NARROW))
    save_checkpoint(root / "model.pth", build_model(cfg, 9, load_pretrained=False), num_epoch=1, best_met=0.0)
    evaluate = ["--only_val=True", "--only_test=True", f"--resume_path={root / 'model.pth'}"]
    main = [sys.executable, "code/main_dist.py", "u"]
    cases = {}

    data = corrupt_copy(good, root / "truncated")
    truncate(image_of(data, "train_flat", 0))
    cases["truncated image, read in a loader worker"] = (
        main + data_flags(data, root / "out_truncated") + ["--nw=1"],  # trains from the earlier run's models/u.pth
        [str(image_of(data, "train_flat", 0)), "row ", "truncated", "--skip_corrupt"])

    data = corrupt_copy(good, root / "garbage")
    image_of(data, "val", 4).write_bytes(bytes(range(256)) * 8)
    cases["garbage image bytes"] = (
        main + data_flags(data, root / "out_garbage") + evaluate,
        [str(image_of(data, "val", 4)), "row 4", "--skip_corrupt"])

    data = corrupt_copy(good, root / "empty_query")
    set_query(data, "val", 1, "")
    cases["empty query"] = (
        main + data_flags(data, root / "out_empty_query") + evaluate,
        [str(data / "csv_dir" / "val.csv"), "row 1", "empty query", "--skip_corrupt"])

    data = corrupt_copy(good, root / "control")
    set_query(data, "test", 3, "left\x07red circle")
    cases["control character in a query"] = (
        main + data_flags(data, root / "out_control") + evaluate,
        [str(data / "csv_dir" / "test.csv"), "row 3", "control character", "--skip_corrupt"])

    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}, "epoch": 3}, root / "foreign.pth")
    cases["foreign checkpoint"] = (
        main + data_flags(good, root / "out_foreign") + ["--only_test=True", f"--resume_path={root / 'foreign.pth'}"],
        [str(root / "foreign.pth"), "model_state_dict", "--resume_path="])

    cases["output folder blocked by a file"] = (
        main + data_flags(good, root / "out_blocked"), [str(root / "out_blocked" / "models"), "--tmp_path"])

    cases["missing csv"] = (
        main + data_flags(good, root / "out_missing") + [f"--ds_info.toy.test_csv_file={root / 'nowhere' / 'test.csv'}"],
        [str(root / "nowhere" / "test.csv"), "make gin-data"])

    (root / "garbage.pkl").write_bytes(b"\x80\x04not a pickle at all")
    cases["eval_script: garbage predictions file"] = (
        [sys.executable, "code/eval_script.py", str(root / "garbage.pkl"), str(good / "csv_dir" / "val.csv")],
        [str(root / "garbage.pkl"), "main_dist.py"])

    runs = {}
    for name, (cmd, expected) in cases.items():
        tmp_path = next((a.split("=", 1)[1] for a in cmd if a.startswith("--tmp_path=")), None)
        out = Path(tmp_path) if tmp_path else root / "out_eval"  # eval_script writes nothing; a folder beside it
        if "blocked" in name:
            out.mkdir()
            (out / "models").write_text("a file where the models folder goes\n")
        else:
            previous_run(out, root / "model.pth")
        runs[name] = (cmd, expected, out, snapshot(out))
    procs = {name: subprocess.Popen(runs[name][0], cwd=GIN, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name in SUBPROCESS}
    results = {name: (proc.wait(timeout=300), *proc.communicate()) for name, proc in procs.items()}
    return {name: (*run, results.get(name)) for name, run in runs.items()}


def run_here(cmd: list[str], capfd) -> tuple[int, str, str]:
    """main_dist.main on ``cmd``'s arguments in this process: (exit code, stdout, stderr)."""
    capfd.readouterr()
    with pytest.raises(SystemExit) as exc:
        main_dist.main(cmd[2:])
    out, err = capfd.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("case", ["truncated image, read in a loader worker", "garbage image bytes", "empty query",
                                  "control character in a query", "foreign checkpoint",
                                  "output folder blocked by a file", "missing csv",
                                  "eval_script: garbage predictions file"])
def test_bad_input_stops_with_one_line_naming_the_file_and_the_fix(matrix, case, capfd):
    cmd, expected, out, before, result = matrix[case]
    code, stdout, stderr = result if result is not None else run_here(cmd, capfd)
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for text in expected:
        assert text in last, (text, last)
    after = snapshot(out)
    for path, content in before.items():
        if path.relative_to(out).parts[0] in LOGS:
            assert after[path].startswith(content), path
        else:
            assert after[path] == content, path
    assert "epoch 1 " not in stdout  # stopped before any training epoch finished


def test_skip_corrupt_skips_each_bad_sample_logs_it_and_the_count(small_toy, tmp_path):
    data = tiny_set(small_toy, tmp_path / "data")
    truncate(image_of(data, "val", 0))  # rows 0-3 show this image
    set_query(data, "val", 5, "")
    set_query(data, "test", 6, "red\x00circle")
    torch.manual_seed(0)
    cfg = merge_overrides(load_config(), dict(f[2:].split("=", 1) for f in NARROW))
    save_checkpoint(tmp_path / "model.pth", build_model(cfg, 9, load_pretrained=False), num_epoch=1, best_met=0.0)
    main_dist.main(["skip", *data_flags(data, tmp_path / "out"), "--only_val=True", "--only_test=True", "--nw=1",
                    "--skip_corrupt", f"--resume_path={tmp_path / 'model.pth'}"])
    predictions = tmp_path / "out" / "predictions" / "skip"
    assert sorted(p["id"] for p in pickle.loads((predictions / "dl0_preds.pkl").read_bytes())) == [4, 6, 7]
    assert sorted(p["id"] for p in pickle.loads((predictions / "test0_preds.pkl").read_bytes())) == [0, 1, 2, 3, 4, 5, 7]
    log = (tmp_path / "out" / "ext_logs" / "skip.txt").read_text().splitlines()
    skipped = [line for line in log if "--skip_corrupt: skipping" in line]
    assert len(skipped) == 6  # val rows 0-3 (truncated image), val row 5 (empty query), test row 6 (control character)
    assert sum(str(image_of(data, "val", 0)) in line for line in skipped) == 4
    assert "6 corrupt sample(s) skipped in all" in log[-1]
