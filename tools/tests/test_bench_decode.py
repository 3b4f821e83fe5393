"""tools/bench_decode.py: each captioner's result is read back, and a failing script is reported, not hidden."""
from __future__ import annotations

import textwrap
from pathlib import Path

from tools.bench_decode import run_one
from tools.run_tests import SUBPROJECTS, jobs_for


def write_script(folder: Path, body: str) -> Path:
    folder.mkdir()
    (folder / "bench_decode.py").write_text(textwrap.dedent(body))
    return folder


def test_result_is_read_back_with_quick_flag(tmp_path):
    folder = write_script(tmp_path / "captioner", """
        import json, sys
        out = sys.argv[sys.argv.index("--out") + 1]
        json.dump({"speedup": 2.5, "identical": True, "old_s": 5.0, "cached_s": 2.0, "quick": "--quick" in sys.argv},
                  open(out, "w"))
    """)
    result = run_one(folder, quick=True, timeout_s=60)
    assert result == {"speedup": 2.5, "identical": True, "old_s": 5.0, "cached_s": 2.0, "quick": True}


def test_failing_script_gives_its_last_line(tmp_path):
    folder = write_script(tmp_path / "captioner", """
        import sys
        sys.exit("decoding failed: shapes differ")
    """)
    result = run_one(folder, quick=False, timeout_s=60)
    assert result == {"error": "exit 1: decoding failed: shapes differ"}


def test_script_past_its_time_is_stopped(tmp_path):
    folder = write_script(tmp_path / "captioner", "import time; time.sleep(30)\n")
    assert run_one(folder, quick=False, timeout_s=1) == {"error": "did not finish in 1 s"}


def test_multinode_runs_only_the_subprojects_with_the_marker_option():
    jobs = jobs_for(["shared_eval", *SUBPROJECTS, "toydata", "tools"], [], "multinode")
    assert [j.suite for j in jobs] == SUBPROJECTS
    assert all(j.extra_args[:3] == ["--multinode", "-m", "multinode"] for j in jobs)
    assert all(j.label.endswith("[multinode]") for j in jobs)
