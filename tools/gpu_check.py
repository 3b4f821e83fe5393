"""`make gpu-check`: the five models at the paper's size (tiny widths with --tiny), seeded random weights, measured
where CPUs cannot: training and inference in float32 and bf16 autocast (finite losses, first bf16 loss within 2 %,
greedy captions identical for >= 90 % of items, boxes within 1 px, mask IoU >= 0.99), throughput with and without
torch.compile, peak GPU memory, FLOPs per step, achieved TFLOP/s and MFU against the H100's bf16 dense peak, gin
ms/image at 320/512/608, dmn batch 1 vs batched, difnet and spatial_captioning one SCST iteration.

Each subproject has its own top-level packages, so each runs in its own process (from its folder, with the repository
root on PYTHONPATH, as the Makefiles run scripts); this script merges their JSON into --out and prints one table.
Exit status 0 when every check passes, 1 otherwise, 2 on bad flags.

    python tools/gpu_check.py [--device cuda|cpu] [--tiny] [--out runs/bench/gpu_check.json] [--only gin dmn]

On the lent H100 (bare: Python 3.12 and torch 2.11 there, no sru, pycocotools or ftfy), prepared here with
`bash tools/gpu_check_device.sh fetch-wheels` and then one device call, under 8 minutes:

    run(command="bash tools/gpu_check_device.sh run", carry=[".whl"], timeout_s=560)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Subproject:
    name: str
    folder: str
    argv: tuple[str, ...]  # after the interpreter, run from ``folder``
    budget_s: float  # soft, checked between phases; the process is killed at 2 x budget + 60 s
    extra_path: str = ""  # added to PYTHONPATH besides the repository root

    def command(self) -> list[str]:
        return [sys.executable, "-u", *self.argv]


# Per-subproject budgets (soft: checked between phases). dmn runs last: importing sru builds its CUDA kernel first.
SUBPROJECTS = {
    "difnet": Subproject("difnet", "difnet", ("gpu_check.py",), 50),
    "gin": Subproject("gin", "gin", ("code/gpu_check.py",), 70),
    "clip4idc": Subproject("clip4idc", "clip4idc", ("gpu_check.py",), 55),
    "spatial_captioning": Subproject("spatial_captioning", "spatial_captioning", ("gpu_check.py",), 50),
    "dmn": Subproject("dmn", "dmn", ("-m", "dmn_pytorch.gpu_check"), 70, extra_path="dmn"),
}
# The whole run: on one H100 the five end within about 7 minutes, under the 8 and the device call's limit.
TOTAL_BUDGET_S = 420


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="narrow widths and small batches (the CPU test)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "gpu_check.json")
    parser.add_argument("--only", nargs="+", choices=list(SUBPROJECTS), default=list(SUBPROJECTS))
    parser.add_argument("--budget", type=float, default=None, help="seconds per subproject (default: its own)")
    parser.add_argument("--total_budget", type=float, default=TOTAL_BUDGET_S,
                        help="seconds for the whole run: later subprojects get what is left, none starts after it")
    parser.add_argument("--compile_backend", choices=["inductor", "eager", "none"], default=None,
                        help="torch.compile backend (default inductor on CUDA, none on CPU)")
    args = parser.parse_args(argv)
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; give a .json file path")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda, but torch sees no CUDA device here; use --device cpu (with --tiny)")
    return args


def run_subproject(sub: Subproject, args: argparse.Namespace, parts: Path, seconds_left: float) -> dict:
    """One subproject's check in its own process; its JSON, or an error entry naming its log."""
    out, log = parts / f"{sub.name}.json", parts / f"{sub.name}.log"
    out.unlink(missing_ok=True)
    if seconds_left <= 0:
        return {"subproject": sub.name, "error": "not run: --total_budget spent"}
    budget = min(args.budget if args.budget is not None else sub.budget_s, seconds_left)
    cmd = [*sub.command(), "--device", args.device, "--out", str(out), "--budget", str(budget)]
    if args.tiny:
        cmd.append("--tiny")
    if args.compile_backend:
        cmd += ["--compile_backend", args.compile_backend]
    path = [str(ROOT)] + ([str(ROOT / sub.extra_path)] if sub.extra_path else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    if args.device == "cpu":
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"--- {sub.name}: {' '.join(cmd[1:])}", flush=True)
    start = time.monotonic()
    with log.open("w") as log_file:
        try:
            proc = subprocess.run(cmd, cwd=ROOT / sub.folder, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  timeout=min(2 * budget, seconds_left) + 60)
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = None
    seconds = round(time.monotonic() - start, 1)
    if returncode == 0 and out.is_file():
        return {**json.loads(out.read_text()), "wall_seconds": seconds}
    tail = log.read_text().strip().splitlines()[-5:]
    print("\n".join(tail), flush=True)
    reason = "timed out" if returncode is None else f"exit {returncode}"
    return {"subproject": sub.name, "error": f"{reason} after {seconds} s; see {log}", "log_tail": tail,
            "wall_seconds": seconds}


def models_of(results: dict) -> list[tuple[str, dict]]:
    return [(name, model) for name, result in results.items() for model in result.get("models", [])]


def all_pass(results: dict) -> bool:
    return all("error" not in r for r in results.values()) and \
        all(model["checks"]["pass"] for _, model in models_of(results))


def figure(phase: dict, key: str, fmt: str = "{:.1f}") -> str:
    value = phase.get(key) if isinstance(phase, dict) else None
    return "-" if value is None else fmt.format(value)


def table(results: dict) -> str:
    """One row per model: FLOPs, throughput and MFU per precision, and the check verdicts."""
    head = (f"{'model':24s} {'GFLOP/step':>10s} {'train/s fp32':>12s} {'bf16':>8s} {'infer/s fp32':>12s} "
            f"{'bf16':>8s} {'TFLOP/s bf16':>12s} {'MFU':>6s} {'peak MiB':>9s} {'loss gap':>8s} "
            f"{'agreement':>9s}  pass")
    rows = [head, "-" * len(head)]
    for name, result in results.items():
        if "error" in result:
            rows.append(f"{name:24s} ERROR {result['error']}")
    for _, m in models_of(results):
        train, infer, checks = m["train"], m["inference"], m["checks"]
        rows.append(
            f"{m['model'][:24]:24s} {m['train_flops_per_step'] / 1e9:10.2f} {figure(train['fp32'], 'train_samples_per_s'):>12s} "
            f"{figure(train['bf16'], 'train_samples_per_s'):>8s} {figure(infer['fp32'], 'infer_items_per_s'):>12s} "
            f"{figure(infer['bf16'], 'infer_items_per_s'):>8s} {figure(train['bf16'], 'achieved_tflops', '{:.3f}'):>12s} "
            f"{figure(train['bf16'], 'mfu', '{:.3f}'):>6s} {figure(train['bf16'], 'peak_memory_mib', '{:.0f}'):>9s} "
            f"{figure(checks, 'first_loss_rel_gap', '{:.4f}'):>8s} "
            f"{figure(checks['inference_agreement'], 'value', '{:.3f}'):>9s}  {'yes' if checks['pass'] else 'NO'}")
    return "\n".join(rows)


def write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = args.out.parent / (args.out.stem + "_parts")
    parts.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results = {}
    for name in [n for n in SUBPROJECTS if n in args.only]:
        results[name] = run_subproject(SUBPROJECTS[name], args, parts,
                                       args.total_budget - (time.monotonic() - start))
    merged = {"device": args.device, "tiny": args.tiny, "compile_backend": args.compile_backend,
              "seconds": round(time.monotonic() - start, 1), "pass": all_pass(results), "subprojects": results}
    write_atomic(args.out, merged)
    print(table(results))
    print(f"gpu-check: {'all checks pass' if merged['pass'] else 'SOME CHECKS FAIL'}; {merged['seconds']} s; "
          f"wrote {args.out}")
    return 0 if merged["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
