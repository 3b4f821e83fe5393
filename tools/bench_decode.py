"""Cached against full-prefix decoding, per captioner: runs each `<subproject>/bench_decode.py` and merges the results.

Each captioner's script times its old decoding path (the original's: the whole prefix re-run at every step) against
the key/value-cached one on the same weights and inputs, and says whether the tokens are identical. This script runs
them one after another (one torch thread each, so timings do not disturb each other) and writes
`runs/bench/decode.json` as `{"difnet": {...}, "spatial_captioning": {...}, ...}`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
CAPTIONERS = ["difnet", "spatial_captioning", "clip4idc"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_one(folder: Path, quick: bool, timeout_s: int) -> dict:
    """Run `folder/bench_decode.py`; its JSON, or {"error": one line} when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decode.json"
        cmd = [sys.executable, "bench_decode.py", "--out", str(out), *(["--quick"] if quick else [])]
        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": python_path}
        try:
            proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish in {timeout_s} s"}
        if proc.returncode != 0 or not out.exists():
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"error": f"exit {proc.returncode}: {last[0]}"}
        return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (each captioner well under 1.5 CPU minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "decode.json", help="merged results")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per captioner")
    args = parser.parse_args()
    present = [p for p in CAPTIONERS if (ROOT / p / "bench_decode.py").exists()]
    results: dict[str, dict] = {}
    print(f"{'captioner':20s} {'old s':>8s} {'cached s':>9s} {'speed-up':>9s}  identical", flush=True)
    for subproject in present:
        result = run_one(ROOT / subproject, args.quick, args.timeout)
        results[subproject] = result
        if "error" in result:
            print(f"{subproject:20s} failed: {result['error']}", flush=True)
            continue
        print(f"{subproject:20s} {result['old_s']:8.2f} {result['cached_s']:9.2f} {result['speedup']:8.2f}x  "
              f"{'yes' if result['identical'] else 'NO'}", flush=True)
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    failed = [p for p, r in results.items() if "error" in r or not r.get("identical")]
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
