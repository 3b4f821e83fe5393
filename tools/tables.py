"""Reproduce the papers' tables: run each row of tools/paper_rows.toml whose data and weights are present, and write
runs/tables/results.md and results.json (paper value, ours, difference, command, date).

    python tools/tables.py                 # released weights (rows with missing data say what fetches it)
    python tools/tables.py --toy           # every row on the toy data with the toy checkpoint of make P-demo

Both modes run the same command per row (only the data and checkpoint paths differ, see paper_rows.toml), and each
keeps its own section of results.json, so the toy figures sit next to the real ones in results.md, labelled toy.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
ROWS_FILE = ROOT / "tools" / "paper_rows.toml"
LOG = logging.getLogger("tables")
MODES = ("real", "toy")
LAST = "{last}"  # in a path value: the highest-numbered file of that name (e.g. the last epoch's checkpoint)
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")
THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


class TablesError(Exception):
    """A problem with the rows file or the flags: one line for the user, exit status 2."""


@dataclass
class Figure:
    name: str
    paper: float
    step: int
    scale: float
    printed_dict: str | None = None
    printed_regex: str | None = None
    json: str | None = None
    key: str | None = None


@dataclass
class Row:
    id: str
    subproject: str
    label: str
    steps: list[str]
    figures: list[Figure]
    requires: list[dict[str, str]]
    real: dict[str, str]
    toy: dict[str, str] | None
    toy_none: str | None
    toy_flags: str
    toy_flag_steps: list[int]
    cwd: str
    reference: str | None


@dataclass
class Places:
    """Where a run reads and writes: the python, data folders, demo outputs and the scratch root."""
    python: str
    root: Path
    data: Path
    toy: Path
    demo: Path
    runs: Path
    device: str


def load_rows(path: Path = ROWS_FILE) -> list[Row]:
    try:
        spec = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TablesError(f"{path}: cannot be read as TOML ({exc})") from None
    rows = []
    for raw in spec.get("rows", []):
        try:
            figures = [Figure(name=f["name"], paper=float(f["paper"]), step=int(f.get("step", 0)),
                              scale=float(f.get("scale", 1)), printed_dict=f.get("printed_dict"),
                              printed_regex=f.get("printed_regex"), json=f.get("json"),
                              key=f.get("key")) for f in raw["figures"]]
            toy = raw.get("toy")
            rows.append(Row(id=raw["id"], subproject=raw["subproject"], label=raw["label"], steps=raw["steps"],
                            figures=figures, requires=raw.get("requires", []), real=raw.get("real", {}),
                            toy=toy if isinstance(toy, dict) else None,
                            toy_none=toy if isinstance(toy, str) else None, toy_flags=raw.get("toy_flags", ""),
                            toy_flag_steps=raw.get("toy_flag_steps", [0]),
                            cwd=raw.get("cwd", "{root}/" + raw["subproject"]), reference=raw.get("reference")))
        except KeyError as exc:
            raise TablesError(f"{path}: row {raw.get('id', '?')} lacks the key {exc}") from None
    for row in rows:
        if not (ROOT / row.subproject / "Makefile").is_file():
            raise TablesError(f"{path}: row {row.id} names subproject {row.subproject}, which has no "
                              f"{row.subproject}/Makefile")
        bad = [f.name for f in row.figures if not 0 <= f.step < len(row.steps)]
        if bad:
            raise TablesError(f"{path}: row {row.id}: figure {bad[0]} reads a step the row does not have")
        check_placeholders(row, path)
    return rows


def check_placeholders(row: Row, path: Path) -> None:
    """Every {name} of the row's commands, requirements and figure files has a value in both modes."""
    places = Places(python="python", root=ROOT, data=ROOT, toy=ROOT, demo=ROOT, runs=ROOT, device="cpu")
    for mode in MODES if row.toy is not None else ("real",):
        try:
            values = row_values(row, mode, places, ROOT)
            for index in range(len(row.steps)):
                step_argv(row, index, mode, values)
            for template in [need["path"] for need in row.requires if "path" in need] + \
                    [figure.json for figure in row.figures if figure.json]:
                template.format_map(values)
        except KeyError as exc:
            raise TablesError(f"{path}: row {row.id} uses the placeholder {{{exc.args[0]}}}, which has no value "
                              f"in {mode} mode (add it to [rows.{mode}])") from None
        except ValueError as exc:
            raise TablesError(f"{path}: row {row.id}: {exc} (a literal brace is written {{{{ or }}}})") from None


def base_values(row: Row, places: Places, out: Path) -> dict[str, str]:
    return {"python": places.python, "root": str(places.root), "out": str(out),
            "data": str(places.data / row.subproject), "toy": str(places.toy / row.subproject),
            "demo": str(places.demo / row.subproject), "device": places.device, "last": LAST}


def resolve_last(path: str) -> str:
    """``dir/name.{last}`` -> the existing ``dir/name.N`` with the largest N (unchanged when there is none)."""
    if not path.endswith(LAST):
        return path
    stem = Path(path[: -len(LAST)])
    numbers = [int(p.name[len(stem.name):]) for p in stem.parent.glob(stem.name + "*")
               if p.name[len(stem.name):].isdigit()] if stem.parent.is_dir() else []
    return f"{stem}{max(numbers)}" if numbers else path


def row_values(row: Row, mode: str, places: Places, out: Path) -> dict[str, str]:
    """Every placeholder of the row's templates, for ``mode``: the base places plus the row's real or toy paths."""
    values = base_values(row, places, out)
    own = row.real if mode == "real" else (row.toy or {})
    values.update({key: resolve_last(value.format_map(values)) for key, value in own.items()})
    return values


def step_argv(row: Row, index: int, mode: str, values: dict[str, str]) -> list[str]:
    """One step's command line; in toy mode the steps that load the model (``toy_flag_steps``) get ``toy_flags``."""
    quoted = {key: shlex.quote(value) for key, value in values.items()}
    argv = shlex.split(row.steps[index].format_map(quoted))
    if mode == "toy" and index in row.toy_flag_steps and row.toy_flags:
        argv += shlex.split(row.toy_flags.format_map(quoted))
    return argv


def missing_requirements(row: Row, values: dict[str, str]) -> list[dict[str, str]]:
    missing = []
    for need in row.requires:
        if "module" in need:
            if importlib.util.find_spec(need["module"]) is None:
                missing.append({"what": f"Python module {need['module']}", "how": need["how"]})
        elif not Path(need["path"].format_map(values)).exists():
            missing.append({"what": need["path"].format_map(values), "how": need["how"]})
    return missing


def missing_toy_inputs(row: Row, values: dict[str, str]) -> dict[str, list[str]]:
    """The toy row's data (``{toy}``) and demo checkpoint (``{demo}``) paths that do not exist, by kind."""
    missing: dict[str, list[str]] = {"toy": [], "demo": []}
    for key, template in (row.toy or {}).items():
        for kind in ("toy", "demo"):
            if template.startswith("{" + kind + "}") and not Path(values[key]).exists():
                missing[kind].append(values[key])
    return missing


def lookup(obj: Any, dotted: str) -> Any:
    """``a.b.-1.c``: dict keys and list indices."""
    for part in dotted.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def last_dict_line(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, dict):
                return value
    return None


def read_figure(figure: Figure, output: str, values: dict[str, str]) -> float:
    """The figure in the paper's unit, from what its step printed or wrote; KeyError/ValueError when absent."""
    if figure.printed_dict is not None:
        printed = last_dict_line(output)
        if printed is None:
            raise ValueError("the step printed no result dict")
        raw = lookup(printed, figure.printed_dict)
    elif figure.printed_regex is not None:
        matches = re.findall(figure.printed_regex, output)
        if not matches:
            raise ValueError(f"no line of the output matches {figure.printed_regex!r}")
        raw = matches[-1]
    else:
        path = Path(figure.json.format_map(values))
        if not path.is_file():
            raise ValueError(f"{path} was not written")
        raw = lookup(json.loads(path.read_text()), figure.key)
    return float(raw) * figure.scale


def display(argv: list[str], cwd: str, root: Path) -> str:
    """The command as a user would type it from the repository root."""
    where = shown(cwd, root)
    command = shlex.join(argv)
    return command if where == "." else f"cd {shlex.quote(where)} && {command}"


def run_step(argv: list[str], cwd: str, root: Path, log_file: Path, timeout: float | None) -> tuple[int, str]:
    """Run one command with its output (both streams) going to ``log_file``; (exit status, that output). A command
    that outlives ``timeout`` is killed with everything it started (its own process group)."""
    env = {**os.environ, **THREADS_ENV,
           "PYTHONPATH": os.pathsep.join([str(root), cwd] + ([os.environ["PYTHONPATH"]]
                                                            if os.environ.get("PYTHONPATH") else []))}
    with log_file.open("w") as log:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = 124
        except BaseException:  # Ctrl-C: stop the evaluation too
            os.killpg(process.pid, signal.SIGKILL)
            raise
        if status == 124 and process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log.write(f"\n(killed after {timeout} s)\n")
    return status, log_file.read_text(errors="replace")


def evaluate_row(row: Row, mode: str, places: Places, timeout: float | None) -> dict:
    """Run the row's steps in a fresh scratch folder and read its figures."""
    out = places.runs / mode / row.id
    shutil.rmtree(out, ignore_errors=True)  # a stale results file must never be read as this run's
    out.mkdir(parents=True)
    values = row_values(row, mode, places, out)
    cwd = row.cwd.format_map(values)
    commands, outputs = [], []
    start, cpu_start = time.monotonic(), children_cpu_seconds()
    result: dict[str, Any] = {"status": "done"}
    for index in range(len(row.steps)):
        argv = step_argv(row, index, mode, values)
        commands.append(display(argv, cwd, places.root))
        log_file = out / f"step{index}.log"
        LOG.info("%s [%s] step %d/%d (log: %s): %s", row.id, mode, index + 1, len(row.steps),
                 shown(str(log_file), places.root), commands[-1])
        status, output = run_step(argv, cwd, places.root, log_file, timeout)
        outputs.append(output)
        if status != 0:
            result = {"status": "failed", "note": f"step {index + 1} exited with status {status}; see "
                                                  f"{shown(str(log_file), places.root)}"}
            break
    figures = []
    for figure in row.figures:
        entry: dict[str, Any] = {"name": figure.name, "paper": figure.paper, "ours": None, "difference": None}
        if result["status"] == "done":
            try:
                entry["ours"] = round(read_figure(figure, outputs[figure.step], values), 4)
                entry["difference"] = round(entry["ours"] - figure.paper, 4)
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                result = {"status": "failed", "note": f"{figure.name}: cannot read the figure ({exc})"}
        figures.append(entry)
    return {**result, "figures": figures, "commands": commands,
            "seconds": round(time.monotonic() - start, 1),
            "cpu_seconds": round(children_cpu_seconds() - cpu_start, 1)}


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (the evaluations)."""
    times = os.times()
    return times.children_user + times.children_system


def make_target(subproject: str, target: str, places: Places) -> int:
    """``make -C <P> toy|demo`` as the top-level P-toy / P-demo rules call it (no set-up step: it is done)."""
    argv = ["make", "--no-print-directory", "-C", str(places.root / subproject), target, f"PY={places.python}",
            f"ROOT={places.root}", f"OUT={places.demo / subproject}"]
    LOG.info("running %s", shlex.join(argv))
    # `make tables TOY=1` passes TOY=1 down through MAKEFLAGS; the sub-Makefiles' own TOY (a folder) must win
    env = {key: value for key, value in os.environ.items() if key not in MAKE_VARIABLES}
    return subprocess.run(argv, env={**env, **THREADS_ENV}).returncode


def shown(path: str, root: Path) -> str:
    """A path relative to the repository root when it is inside it."""
    return os.path.relpath(path, root) if Path(path).is_relative_to(root) else path


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def placeholder_commands(row: Row, mode: str, places: Places) -> list[str]:
    out = places.runs / mode / row.id
    values = row_values(row, mode, places, out)
    return [display(step_argv(row, i, mode, values), row.cwd.format_map(values), places.root)
            for i in range(len(row.steps))]


def skipped(row: Row, status: str, note: str, needs: list[str], commands: list[str]) -> dict:
    figures = [{"name": f.name, "paper": f.paper, "ours": None, "difference": None} for f in row.figures]
    return {"status": status, "note": note, "needs": needs, "figures": figures, "commands": commands}


def run_real(row: Row, places: Places, timeout: float | None) -> dict:
    values = row_values(row, "real", places, places.runs / "real" / row.id)
    missing = missing_requirements(row, values)
    if missing:
        needs = list(dict.fromkeys(m["how"] for m in missing))
        note = "missing: " + ", ".join(shown(m["what"], places.root) for m in missing)
        return skipped(row, "missing data", note, needs, placeholder_commands(row, "real", places))
    return evaluate_row(row, "real", places, timeout)


def run_toy(row: Row, places: Places, timeout: float | None, make_demo: bool, made: dict[str, int]) -> dict:
    """The row's command on the toy data with the toy checkpoint; make P-demo (or P-toy) first when it is absent."""
    if row.toy is None:
        return skipped(row, "no toy run", row.toy_none or "no toy checkpoint", [], [])
    values = row_values(row, "toy", places, places.runs / "toy" / row.id)
    missing = missing_toy_inputs(row, values)
    if (missing["toy"] or missing["demo"]) and make_demo and row.subproject not in made:
        made[row.subproject] = make_target(row.subproject, "demo" if missing["demo"] else "toy", places)
        values = row_values(row, "toy", places, places.runs / "toy" / row.id)
        missing = missing_toy_inputs(row, values)
    if missing["toy"] or missing["demo"]:
        target = f"make {row.subproject}-demo" if missing["demo"] else f"make {row.subproject}-toy"
        note = "missing: " + ", ".join(shown(p, places.root) for p in missing["toy"] + missing["demo"])
        if made.get(row.subproject):
            note += f" (make exited with status {made[row.subproject]})"
        return skipped(row, "missing toy checkpoint", note, [target], placeholder_commands(row, "toy", places))
    return evaluate_row(row, "toy", places, timeout)


def read_previous(path: Path) -> dict:
    """The other mode's section of an earlier results.json (a missing or unreadable file: none)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return previous if isinstance(previous, dict) else {}


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render_markdown(results: dict) -> str:
    lines = ["# Papers' tables, reproduced", "",
             "Written by `make tables` (released weights) and `make tables TOY=1` (toy data, toy checkpoints of "
             "`make P-demo`); rows come from `tools/paper_rows.toml`. Values in the papers' units (% unless "
             "named otherwise).", ""]
    for mode, title in (("real", "Released weights (paper rows)"),
                        ("toy", "TOY: the toy checkpoints through the same commands (not comparable to the paper)")):
        section = results.get(mode)
        lines += [f"## {title}", ""]
        if not section:
            lines += [f"Not run yet (`make tables{' TOY=1' if mode == 'toy' else ''}`).", ""]
            continue
        if mode == "real":
            lines += ["| row | figure | paper | ours | difference | status |", "|---|---|---|---|---|---|"]
        else:
            lines += ["| row | figure | paper | ours (toy) | status |", "|---|---|---|---|---|"]
        for row in section["rows"]:
            for figure in row["figures"]:
                cells = [row["label"], figure["name"], fmt(figure["paper"]), fmt(figure["ours"])]
                cells += [fmt(figure["difference"])] if mode == "real" else []
                lines.append("| " + " | ".join(cells + [row["status"]]) + " |")
        lines.append("")
        for row in section["rows"]:
            cost = f" in {row['seconds']:.0f} s ({row['cpu_seconds']:.0f} CPU s)" if "seconds" in row else ""
            lines.append(f"- **{row['label']}** (`{row['id']}`): {row['status']}{cost}, {row['date']}"
                         + (f"; {row['note']}" if row.get("note") else "")
                         + (f"; reference: {row['reference']}" if row.get("reference") else ""))
            lines += [f"  - needs: {need}" for need in row.get("needs", [])]
            lines += [f"  - `{command}`" for command in row.get("commands", [])]
        lines.append("")
    return "\n".join(lines)


def merge_rows(rows: list[Row], earlier: dict, now_run: dict) -> dict:
    """This run's rows, plus the earlier run's rows that this one skipped (--only), in the rows file's order."""
    by_id = {row["id"]: row for row in earlier.get("rows", []) if isinstance(row, dict) and "id" in row}
    by_id.update({row["id"]: row for row in now_run["rows"]})
    return {"date": now_run["date"], "rows": [by_id[row.id] for row in rows if row.id in by_id]}


def write_results(results: dict, out_dir: Path) -> None:
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    write_text_atomic(out_dir / "results.md", render_markdown(results))


def run_all(rows: list[Row], mode: str, places: Places, timeout: float | None,
            make_demo: bool, only: list[str]) -> dict:
    section_rows: list[dict] = []
    made: dict[str, int] = {}  # make P-demo / P-toy exit status, per subproject (run at most once)
    for row in rows:
        if only and row.id not in only and row.subproject not in only:
            continue
        outcome = (run_real(row, places, timeout) if mode == "real"
                   else run_toy(row, places, timeout, make_demo, made))
        outcome = {"id": row.id, "subproject": row.subproject, "label": row.label, "date": now(),
                   **({"reference": row.reference} if row.reference else {}), **outcome}
        LOG.info("%s [%s]: %s%s", row.id, mode, outcome["status"],
                 f" ({outcome['note']})" if outcome.get("note") else "")
        for need in outcome.get("needs", []):
            LOG.info("    needs: %s", need)
        section_rows.append(outcome)
    return {"date": now(), "rows": section_rows}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--toy", action="store_true", help="evaluate the toy checkpoints of make P-demo instead")
    parser.add_argument("--rows", default=str(ROWS_FILE), help="the rows file (default tools/paper_rows.toml)")
    parser.add_argument("--python", default=sys.executable, help="Python that runs the evaluations")
    parser.add_argument("--data_dir", default=str(ROOT / "data"), help="real data root (<P>/ under it)")
    parser.add_argument("--toy_dir", default=str(ROOT / "data" / "toy"), help="toy data root (<P>/ under it)")
    parser.add_argument("--demo_dir", default=str(ROOT / "runs" / "demo"),
                        help="where make P-demo writes its toy checkpoints (<P>/ under it)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "tables"),
                        help="results.md/.json and each row's scratch folder and logs")
    parser.add_argument("--only", nargs="*", default=[], help="row ids or subproject names to run (default: all)")
    parser.add_argument("--no_make_demo", action="store_true",
                        help="TOY: do not run make P-toy / P-demo for a missing toy checkpoint; report it instead")
    parser.add_argument("--timeout", type=float, default=0, help="seconds per command (0: no limit)")
    parser.add_argument("--device", default="", help="{device} of the rows (default: cuda when nvidia-smi is found)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    args = get_args_parser().parse_args(argv)
    try:
        rows = load_rows(Path(args.rows))
        unknown = [name for name in args.only
                   if name not in {r.id for r in rows} | {r.subproject for r in rows}]
        if unknown:
            raise TablesError(f"--only {unknown[0]}: no such row id or subproject in {args.rows}")
        python = shutil.which(args.python)
        if python is None:
            raise TablesError(f"--python {args.python}: no such executable (run make setup, or give the venv's python)")
    except TablesError as exc:
        print(f"tables.py: {exc}", file=sys.stderr)
        return 2
    mode = "toy" if args.toy else "real"
    places = Places(python=os.path.abspath(python), root=ROOT, data=Path(args.data_dir).resolve(),
                    toy=Path(args.toy_dir).resolve(), demo=Path(args.demo_dir).resolve(),
                    runs=Path(args.runs).resolve(),
                    device=args.device or ("cuda" if shutil.which("nvidia-smi") else "cpu"))
    section = run_all(rows, mode, places, args.timeout or None, not args.no_make_demo, args.only)
    previous = read_previous(places.runs / "results.json")
    results = {**previous, mode: merge_rows(rows, previous.get(mode, {}), section)}
    write_results(results, places.runs)
    LOG.info("wrote %s and results.json", places.runs / "results.md")
    return 1 if any(row["status"] == "failed" for row in section["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
