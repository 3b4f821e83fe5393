"""Run every test suite in its own pytest process and print one closing line `N passed, N failed`.

The five subprojects each have a top-level `models/` (or similar) package, so they cannot share an interpreter.
Suites run two at a time (one torch thread each) on the two cores this project targets.

`--portability` runs instead the tests marked `parity` of every suite once per simulated CPU (torch's and MKL's
dispatch forced down to older instruction sets), so a reference recorded on one CPU is checked against others.

`--multinode` runs instead the tests marked `multinode` of the five subprojects (several torchrun launches on
127.0.0.1 each), one subproject at a time since each test already starts two processes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = ["shared_eval", "difnet", "dmn", "gin", "clip4idc", "spatial_captioning", "toydata", "tools"]
# Suites that compute no model outputs (toy-data writers, scripts around the subprojects): no parity tests.
WITHOUT_PARITY = {"toydata", "tools"}
# Suites that train a model: each has multi-node and elastic-restart tests.
SUBPROJECTS = ["difnet", "dmn", "gin", "clip4idc", "spatial_captioning"]
# Simulated CPUs for --portability: the environment each run adds.
CPU_DISPATCH = {
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "mkl-avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


@dataclass
class SuiteResult:
    name: str
    returncode: int
    passed: int
    failed: int
    skipped: int
    seconds: float
    output: str


def junit_counts(xml_path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from pytest's junit xml; errors count as failures."""
    if not xml_path.exists():
        return 0, 0, 0
    root = ET.parse(xml_path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = failed = skipped = 0
    for s in suites:
        total += int(s.get("tests", 0))
        failed += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return total - failed - skipped, failed, skipped


@dataclass
class Job:
    suite: str
    label: str
    extra_args: list[str]
    env: dict[str, str]


def run_suite(job: Job) -> SuiteResult:
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        xml_path = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml_path}", "tests",
               *job.extra_args]
        proc = subprocess.run(cmd, cwd=ROOT / job.suite, capture_output=True, text=True, env={**os.environ, **job.env})
        passed, failed, skipped = junit_counts(xml_path)
    # pytest exit 5 means no test was collected: a suite that exists but runs nothing is a failure.
    if proc.returncode != 0 and failed == 0:
        failed = 1
    return SuiteResult(job.label, proc.returncode, passed, failed, skipped, time.monotonic() - start,
                       proc.stdout + proc.stderr)


def jobs_for(suites: list[str], extra_args: list[str], mode: str) -> list[Job]:
    if mode == "multinode":
        return [Job(s, f"{s} [multinode]", ["--multinode", "-m", "multinode", *extra_args], {})
                for s in suites if s in SUBPROJECTS]
    if mode != "portability":
        return [Job(s, s, extra_args, {}) for s in suites]
    return [Job(s, f"{s} [{cpu}]", ["-m", "parity", *extra_args], env)
            for cpu, env in CPU_DISPATCH.items() for s in suites if s not in WITHOUT_PARITY]


def main() -> int:
    modes = {"--portability": "portability", "--multinode": "multinode"}
    chosen = [modes[a] for a in sys.argv[1:] if a in modes]
    if len(chosen) > 1:
        print("choose one of --portability and --multinode", file=sys.stderr)
        return 2
    mode = chosen[0] if chosen else "all"
    extra_args = [a for a in sys.argv[1:] if a not in modes]
    suites = [s for s in SUITES if (ROOT / s / "tests").is_dir()]
    jobs = jobs_for(suites, extra_args, mode)
    workers = 1 if mode == "multinode" else int(os.environ.get("TEST_JOBS", "2"))
    print(f"running {len(jobs)} suites, {workers} at a time: {', '.join(j.label for j in jobs)}", flush=True)
    results: list[SuiteResult] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(run_suite, jobs):
            print(f"\n===== {result.name} (exit {result.returncode}, {result.seconds:.0f} s) =====", flush=True)
            print(result.output.rstrip(), flush=True)
            results.append(result)
    print("\n===== summary =====")
    for r in results:
        print(f"{r.name:36s} {r.passed:4d} passed {r.failed:3d} failed {r.skipped:3d} skipped {r.seconds:6.0f} s")
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    skipped = sum(r.skipped for r in results)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
