"""`make demo`: every subproject's demo, two at a time (one thread each), then the table and runs/demo/index.html.

Each demo runs as `make -C P demo` with its output in runs/demo/P/demo.log; one progress line per subproject says
when it started and how it ended. A demo that fails is named at the end, and the others still run.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import demo_table  # noqa: E402

PRINT_LOCK = threading.Lock()


def say(message: str) -> None:
    with PRINT_LOCK:
        print(f"[{time.strftime('%H:%M:%S')}] demo: {message}", flush=True)


def run_demo(root: Path, name: str, python: str, out_root: Path) -> tuple[str, int, float]:
    out = out_root / name
    out.mkdir(parents=True, exist_ok=True)
    say(f"{name} started (log: {out / 'demo.log'})")
    start = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    with (out / "demo.log").open("w") as log:
        code = subprocess.call(["make", "--no-print-directory", "-C", str(root / name), "demo", f"PY={python}",
                                f"ROOT={root}", f"OUT={out}"], stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.monotonic() - start
    say(f"{name} {'finished' if code == 0 else f'FAILED (exit {code}; see its log)'} in {seconds:.0f} s")
    return name, code, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter the subprojects' Makefiles use")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--jobs", type=int, default=2, help="demos at a time")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository whose subprojects run")
    parser.add_argument("subprojects", nargs="*", default=demo_table.SUBPROJECTS)
    args = parser.parse_args(argv)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda name: run_demo(args.root, name, args.python, args.out), args.subprojects))
    failed = [name for name, code, _ in results if code != 0]
    say(f"all demos done in {time.monotonic() - start:.0f} s wall")
    table_code = demo_table.main(args.out, args.subprojects)
    if failed:
        print(f"demo: failed: {', '.join(failed)} (logs in {args.out}/<subproject>/demo.log)")
        return 1
    return table_code


if __name__ == "__main__":
    sys.exit(main())
