"""Runs ``python -m dmn_pytorch.train`` once per case, each in a forked child of one interpreter that has already
imported the package (torch, sru, OpenCV: ~3 CPU seconds an interpreter), as if started from the shell.

Usage: python forked_cli.py CASES.json RESULTS.json, CASES a list of {"name", "argv", "cwd"}; RESULTS maps each name
to {"returncode", "stdout", "stderr"}.
"""
from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import traceback
from pathlib import Path

import dmn_pytorch.train  # noqa: F401 - imported once, before forking


def run_in_child(argv: list[str], cwd: str, stdout_path: str, stderr_path: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(cwd)
            for fd, path in ((1, stdout_path), (2, stderr_path)):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["dmn_pytorch.train", *argv]
            runpy.run_module("dmn_pytorch.train", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if not isinstance(exit_.code, (int, type(None))):
                print(exit_.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - reported as the interpreter would
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            code = run_in_child(case["argv"], case["cwd"], str(out), str(err))
            results[case["name"]] = {"returncode": code, "stdout": out.read_text(errors="replace"),
                                     "stderr": err.read_text(errors="replace")}
    Path(sys.argv[2]).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
