"""Bad input, run as a user would (the entry scripts in a subprocess, on corrupted copies of a 16-pair toy set): exit
status 2, no traceback (also none from a DataLoader worker), a last line that names the file and the fix, and the
files an earlier run left in the output folder unchanged. --skip_corrupt skips unreadable pairs, logging each and the
count; empty captions are kept with a warning and their count, as the original trains on them."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CODE, ROOT, SMALL_MODEL

FAST = ["--max_words", "8", "--batch_size", "8", "--batch_size_val", "8", "--epochs", "1", "--n_display", "1000",
        "--decoder_model", "decoder-tiny"]
EARLIER_RUN = {"log.txt": "an earlier run's log\n", "results.json": '{"test": {}}', "hyp_ep_eval.json": "[]"}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from toydata.idc import write

    root = tmp_path_factory.mktemp("tiny")
    write(root, seed=0, size=16)  # 16 training pairs, 8 val, 8 test
    return root


@pytest.fixture
def data(tiny_root, tmp_path) -> Path:
    """A copy of the tiny CLEVR-Change folder to corrupt."""
    return Path(shutil.copytree(tiny_root / "clevr_change" / "data", tmp_path / "data"))


@pytest.fixture
def out(tmp_path) -> Path:
    """An output folder holding an earlier run's files."""
    folder = tmp_path / "out"
    folder.mkdir()
    for name, text in EARLIER_RUN.items():
        (folder / name).write_text(text)
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def run(script: str, data: Path, out: Path, *extra: str, gt: Path | None = None) -> subprocess.CompletedProcess:
    args = ["--datatype", "clevr", "--data_path", str(data), "--features_path", str(data), "--output_dir", str(out),
            *SMALL_MODEL, *FAST, *extra]
    if script == "main_task_caption.py":
        args += ["--gt_dir", str(gt), "--no_meteor"]
    return subprocess.run([sys.executable, str(CODE / script), *args], capture_output=True, text=True, cwd=CODE,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}, timeout=300)


def assert_one_line_error(done: subprocess.CompletedProcess, *named: str) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("clip4idc: error: ")
    for text in named:
        assert text in last, last
    return last


def assert_earlier_files_kept(out: Path, before: dict[str, str], log_appended: bool = False) -> None:
    """Every file of the earlier run is unchanged; a run that failed while reading images had opened the log, which
    it only appends to (the original's log.txt), so its earlier bytes are kept."""
    after = digests(out)
    if log_appended:
        assert (out / "log.txt").read_text().startswith(EARLIER_RUN["log.txt"])
        before, after = ({k: v for k, v in d.items() if k != "log.txt"} for d in (before, after))
    assert after == before


def first_test_pair(data: Path) -> str:
    number = json.loads((data / "splits.json").read_text())["test"][0]
    return next(p.name for p in (data / "images").iterdir() if int(p.stem.split("_")[-1]) == int(number))


def test_truncated_image(tiny_root, data, out):
    image = data / "sc_images" / first_test_pair(data).replace("default", "semantic")
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    before = digests(out)
    done = run("main_task_caption.py", data, out, "--do_eval", gt=tiny_root / "gt")
    assert_one_line_error(done, str(image), "unreadable image", "--skip_corrupt", "make clip4idc-data")
    assert_earlier_files_kept(out, before, log_appended=True)


def test_garbage_image_read_by_a_dataloader_worker(data, out):
    """Training reads every training pair's semantic image; the error comes from a worker process."""
    train = json.loads((data / "splits.json").read_text())["train"]
    image = next(p for p in (data / "sc_images").iterdir() if int(p.stem.split("_")[-1]) == int(train[3]))
    image.write_bytes(os.urandom(3000))
    before = digests(out)
    done = run("main_task_retrieval.py", data, out, "--do_train", "--num_thread_reader", "1")
    assert_one_line_error(done, str(image), "cannot identify image file", "--skip_corrupt")
    assert_earlier_files_kept(out, before, log_appended=True)
    assert not (out / "pytorch_model.bin.0").exists()


def test_skip_corrupt_leaves_out_the_pair_and_counts_it(data, out):
    image = data / "sc_images" / first_test_pair(data).replace("default", "semantic")
    image.write_bytes(image.read_bytes()[:100])
    done = run("main_task_retrieval.py", data, out, "--do_eval", "--skip_corrupt")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"--skip_corrupt: skipping test pair {first_test_pair(data)}: {image}: unreadable image" in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        "--skip_corrupt: 1 pair(s) with an unreadable image skipped (test 1)")


def test_empty_caption_is_kept_with_a_counted_warning(data, out):
    """The original trains on empty captions (the real Spot-the-Diff files hold some): kept, with a warning."""
    captions = json.loads((data / "change_captions.json").read_text())
    pair = first_test_pair(data)
    captions[pair] = ["", "  "]
    (data / "change_captions.json").write_text(json.dumps(captions))
    done = run("main_task_retrieval.py", data, out, "--do_eval")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (f"{data / 'change_captions.json'}: 2 empty caption(s) (first in {pair}), kept as the original does"
            in done.stderr)


def test_foreign_checkpoint_as_init_model(data, out, tmp_path):
    foreign = tmp_path / "difnet_model.pth"
    torch.save({"state_dict": {"encoder.layers.0.weight": torch.zeros(2, 2)}, "epoch": 3}, foreign)
    before = digests(out)
    done = run("main_task_caption.py", data, out, "--do_eval", "--init_model", str(foreign), gt=data)
    assert_one_line_error(done, str(foreign), "not a CLIP4IDC checkpoint", "pass a pytorch_model.bin.<epoch>")
    assert_earlier_files_kept(out, before)


def test_output_folder_that_cannot_be_created(data, out):
    """A file standing where the output folder should go: stopped before anything is read or trained."""
    blocked = out / "results.json" / "run"
    before = digests(out)
    done = run("main_task_retrieval.py", data, blocked, "--do_train")
    assert_one_line_error(done, f"--output_dir {blocked} cannot be created", "pass a folder you can write to")
    assert "Running training" not in done.stderr
    assert_earlier_files_kept(out, before)


def test_missing_annotation_file(data, out):
    (data / "no_change_captions.json").unlink()
    before = digests(out)
    done = run("main_task_retrieval.py", data, out, "--do_train")
    assert_one_line_error(done, str(data / "no_change_captions.json"), "run 'make clip4idc-data'")
    assert_earlier_files_kept(out, before)
