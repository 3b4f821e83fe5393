"""Bad input to ``python -m dmn_pytorch.train``: one line naming the file and the fix, exit 2, no traceback, nothing
in the output folder touched. All cases run in one forked-interpreter session (``forked_cli.py``)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
TOY_MODEL = ["--dataset", "unc", "--val", "val", "--backend", "dpn_toy", "--vis-size", "560", "--num-filters", "4",
             "--lang-layers", "2", "--mixed-layers", "2", "--mix-we", "--size", "48", "--emb-size", "16",
             "--hid-size", "16", "--mixed-size", "16", "--hid-mixed-size", "16", "--no-pretrained", "--workers", "0",
             "--accum-iters", "1", "--log-interval", "1000"]
EVAL_ONLY = ["--eval-first", "--epochs", "0"]
EXISTING_OUTPUTS = {"dmn_best_weights.pth": b"weights of an earlier run", "eval_unc_val.json": b'{"evaluations": []}'}


def images(data: Path, split: str) -> list[Path]:
    refs = pickle.loads((data / "other/refcoco/refs(unc).p").read_bytes())
    folder = data / "other/images/mscoco/images/train2014"
    return sorted({folder / f"COCO_train2014_{r['image_id']:012d}.jpg" for r in refs if r["split"] == split})


def truncate(path: Path) -> None:
    """Cut the last quarter: headers intact, so libjpeg decodes it with a grey bottom and a warning naming no file."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 4])


def garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())


def empty_val_queries(data: Path) -> None:
    refs_file = data / "other/refcoco/refs(unc).p"
    refs = pickle.loads(refs_file.read_bytes())
    for ref in refs:
        if ref["split"] == "val":
            for sentence in ref["sentences"]:
                sentence["sent"] = " "
    refs_file.write_bytes(pickle.dumps(refs))


def foreign_checkpoint(path: Path) -> Path:
    """A checkpoint as another project writes it (numpy objects beside the state_dict, as difnet's)."""
    torch.save({"epoch": 3, "best_cider": np.float64(1.1), "state_dict": {"encoder.weight": torch.zeros(2)}}, path)
    return path


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def prepare_cases(toy: Path, root: Path) -> dict[str, dict]:
    """name -> {"argv", "cwd", "names": text the last stderr line must hold, "outputs": folder to keep unchanged}."""
    cases: dict[str, dict] = {}

    def case(name: str, extra: list[str], corrupt=None, names: tuple[str, ...] = ()) -> Path:
        work = root / name
        data = work / "data"
        shutil.copytree(toy, data)
        if corrupt is not None:
            corrupt(data)
        outputs = work / "weights"
        outputs.mkdir()
        for file_name, content in EXISTING_OUTPUTS.items():
            (outputs / file_name).write_bytes(content)
        argv = TOY_MODEL + ["--data", str(data), "--split-root", str(work / "splits"), "--save-folder",
                            str(outputs), "--snapshot", str(work / "none.pth"), "--optim-snapshot",
                            str(work / "none_optim.pth"), *extra]
        cases[name] = {"argv": argv, "cwd": str(work), "names": [n.format(data=data, work=work) for n in names],
                       "outputs": str(outputs)}
        return work

    case("truncated_jpeg", EVAL_ONLY, lambda d: [truncate(p) for p in images(d, "val")],
         ("{data}/other/images/mscoco/images/train2014/COCO_train2014_", "truncated JPEG", "--skip_corrupt"))
    case("garbage_image_in_a_worker", ["--epochs", "1", "--workers", "1", "--max-batches-per-epoch", "2"],
         lambda d: [garbage(p) for p in images(d, "train")],
         ("{data}/other/images/mscoco/images/train2014/COCO_train2014_", "cannot be decoded", "--skip_corrupt"))
    case("empty_query", EVAL_ONLY, empty_val_queries,
         ("empty query", "ann_id", "{data}/other/refcoco/refs(unc).p", "--skip_corrupt"))
    work = case("foreign_checkpoint", EVAL_ONLY, names=("{work}/difnet_best.pth", "DMN weights file"))
    foreign_checkpoint(work / "difnet_best.pth")
    cases["foreign_checkpoint"]["argv"] += ["--snapshot", str(work / "difnet_best.pth")]
    case("resume_of_a_missing_file", ["--epochs", "1", "--resume", str(root / "missing_resume.pth")],
         names=(str(root / "missing_resume.pth"), "drop --resume"))
    work = case("file_in_the_output_path", ["--epochs", "1"], names=("{work}/weights/dmn_best_weights.pth/run",
                                                                       "choose a writable folder"))
    cases["file_in_the_output_path"]["argv"] += ["--save-folder", str(work / "weights/dmn_best_weights.pth/run")]
    case("skip_corrupt", EVAL_ONLY + ["--skip_corrupt"], lambda d: truncate(images(d, "val")[0]))
    return cases


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict[str, dict]:
    from toydata.refer import write

    root = tmp_path_factory.mktemp("bad_inputs")
    toy = root / "toy"
    write(toy, seed=0, size=20, image_size=48)
    cases = prepare_cases(toy, root)
    before = {name: digest(Path(c["outputs"])) for name, c in cases.items()}
    spec = root / "cases.json"
    spec.write_text(json.dumps([{"name": n, "argv": c["argv"], "cwd": c["cwd"]} for n, c in cases.items()]))
    env_path = [str(HERE.parent), str(HERE.parents[1])]
    subprocess.run([sys.executable, str(HERE / "forked_cli.py"), str(spec), str(root / "results.json")], check=True,
                   env={**os.environ, "PYTHONPATH": ":".join(env_path), "OMP_NUM_THREADS": "1"},
                   timeout=300)
    results = json.loads((root / "results.json").read_text())
    for name, case in cases.items():
        case.update(results[name], before=before[name], after=digest(Path(case["outputs"])))
    return cases


ERROR_CASES = ["truncated_jpeg", "garbage_image_in_a_worker", "empty_query", "foreign_checkpoint",
               "resume_of_a_missing_file", "file_in_the_output_path"]


@pytest.mark.parametrize("name", ERROR_CASES)
def test_bad_input_is_one_line_naming_the_file_and_the_fix(matrix, name):
    case = matrix[name]
    assert case["returncode"] == 2, case["stderr"][-2000:]
    assert "Traceback" not in case["stderr"]
    last = case["stderr"].rstrip("\n").splitlines()[-1]
    assert last.startswith("dmn_pytorch.train: error: ")
    for text in case["names"]:
        assert text in last
    assert case["after"] == case["before"]


def test_skip_corrupt_skips_logs_each_and_counts(matrix):
    case = matrix["skip_corrupt"]
    assert case["returncode"] == 0, case["stderr"][-2000:]
    assert "Traceback" not in case["stderr"]
    skipped = [line for line in case["stderr"].splitlines() if "--skip_corrupt: skipping sample" in line]
    assert skipped and all("truncated JPEG" in line for line in skipped)
    assert f"skipped 0 corrupt training sample(s) and {len(skipped)} evaluation sample(s)" in case["stderr"]
    saved = json.loads((Path(case["outputs"]) / "eval_unc_val.json").read_text())
    assert saved["evaluations"][0]["samples"] > 0
