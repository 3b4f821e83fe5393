"""The evaluation CLI on bad input: exit 2, one line naming the file and what to fix, no traceback, nothing lost."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

ANNOTATIONS = {"images": [{"id": 1}, {"id": 2}],
               "annotations": [{"id": 10, "image_id": 1, "caption": "a red circle"},
                               {"id": 11, "image_id": 2, "caption": "a blue square"}]}
RESULTS = [{"image_id": 1, "caption": "a red circle"}, {"image_id": 2, "caption": "a blue square"}]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shared_eval.captions", "--no-meteor", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "ann.json").write_text(json.dumps(ANNOTATIONS))
    (tmp_path / "res.json").write_text(json.dumps(RESULTS))
    (tmp_path / "scores.json").write_text('{"kept": true}')
    return tmp_path


CASES = {
    "truncated results": ("res.json", lambda: json.dumps(RESULTS)[:25], [], "res.json: not valid JSON"),
    "garbage bytes": ("res.json", lambda: b"\xff\xfe\x00garbage", [], "res.json: not valid JSON"),
    "empty results": ("res.json", lambda: "[]", [], "res.json: the results list is empty"),
    "null caption": ("res.json", lambda: json.dumps([{"image_id": 1, "caption": None}]), [],
                     "res.json: the caption of image_id 1 is null"),
    "numeric reference": ("ann.json", lambda: json.dumps({**ANNOTATIONS, "annotations": [
        {"id": 10, "image_id": 1, "caption": 7}, {"id": 11, "image_id": 2, "caption": "x"}]}), [],
        "ann.json: the caption of annotation id 10 is 7"),
    "not coco annotations": ("ann.json", lambda: json.dumps([1, 2]), [], "ann.json: not a COCO caption annotation"),
    "unknown image id": ("res.json", lambda: json.dumps([{"image_id": 9, "caption": "a"}]), [],
                         "image ids are not in"),
    "missing results": ("res.json", None, [], "caption file not found"),
    "out under a file": (None, None, ["--out", "{tmp}/scores.json/x.json"], "is a file, not a folder"),
    "out is a folder": (None, None, ["--out", "{tmp}"], "is a folder"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(inputs, case):
    target, content, extra, message = CASES[case]
    if target and content is None:
        (inputs / target).unlink()
    elif target:
        data = content()
        (inputs / target).write_bytes(data if isinstance(data, bytes) else data.encode())
    before = _digest(inputs)
    proc = _cli("--annotations", str(inputs / "ann.json"), "--results", str(inputs / "res.json"),
                *[a.format(tmp=inputs) for a in extra])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("error: ")
    assert _digest(inputs) == before


def test_good_input_writes_scores_atomically(inputs):
    proc = _cli("--annotations", str(inputs / "ann.json"), "--results", str(inputs / "res.json"),
                "--out", str(inputs / "scores.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((inputs / "scores.json").read_text())["ROUGE_L"] == 1.0
    assert not list(inputs.glob("*.tmp"))
