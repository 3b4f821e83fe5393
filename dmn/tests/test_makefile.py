"""dmn/Makefile's evaluation target: it never evaluates an untrained model without a word."""
from __future__ import annotations

import subprocess
from pathlib import Path

SUBPROJECT = Path(__file__).resolve().parents[1]


def make(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(SUBPROJECT), *args, f"ROOT={root}", "PY=false"],
                          capture_output=True, text=True, timeout=60)


def test_toy_test_trains_first_on_a_fresh_clone(tmp_path):
    (tmp_path / "data/toy/dmn/other/refcoco").mkdir(parents=True)
    (tmp_path / "data/toy/dmn/other/refcoco/instances.json").write_text("{}")
    commands = [line for line in make(tmp_path, "-n", "test").stdout.splitlines() if "dmn_pytorch.train" in line]
    assert len(commands) == 2 and "--epochs 3" in commands[0] and "--epochs 0 --eval-first" in commands[1]
    best = tmp_path / "runs/dmn/toy_weights/dmn_best_weights.pth"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"")
    commands = [line for line in make(tmp_path, "-n", "test").stdout.splitlines() if "dmn_pytorch.train" in line]
    assert len(commands) == 1 and "--eval-first" in commands[0]


def test_real_data_test_without_weights_stops_with_the_fix(tmp_path):
    (tmp_path / "data/dmn/other/refcoco").mkdir(parents=True)
    (tmp_path / "data/dmn/other/refcoco/instances.json").write_text("{}")
    result = make(tmp_path, "test")
    assert result.returncode != 0
    assert "dmn_unc_weights.pth is missing" in result.stderr and "make dmn-data" in result.stderr
    assert "dmn_pytorch.train" not in result.stdout
