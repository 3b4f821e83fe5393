"""Print the `make demo` table from each subproject's `demo_result.json` and write `index.html` beside them.

Contract: every subproject's `make demo` writes OUT/demo_result.json with keys `metric` (str), `before`, `after`,
`seconds` (wall, floats), `figures` (list of image paths), optionally `cpu_seconds`, and, to be compared with its trivial baseline on the same split,
`baseline` (float), `baseline_name` (str) and `lower_is_better` (bool). A demo that trains more than its headline model
lists the others under `more_rows`: each a dict with `label` and the same keys (`seconds` optional), printed below
its subproject's row. The page embeds every figure as a data URI, so it reads offline and can be moved as one file.
"""
from __future__ import annotations

import base64
import html
import json
import mimetypes
import sys
from pathlib import Path

SUBPROJECTS = ["difnet", "dmn", "gin", "clip4idc", "spatial_captioning"]
HEADER = ("subproject", "metric (toy data)", "before", "after", "baseline", "beats baseline", "wall s", "CPU s")


def beats_baseline(result: dict) -> str:
    if result.get("baseline") is None:
        return "no baseline"
    after, baseline = result["after"], result["baseline"]
    return "yes" if (after < baseline if result.get("lower_is_better") else after > baseline) else "no"


def table_row(name: str, result: dict) -> tuple[str, ...]:
    baseline = result.get("baseline")
    baseline_text = f"{baseline:.4f} ({result.get('baseline_name', '?')})" if baseline is not None else "-"
    return (name, result["metric"], f"{result['before']:.4f}", f"{result['after']:.4f}", baseline_text,
            beats_baseline(result), f"{result['seconds']:.0f}" if result.get("seconds") is not None else "-",
            f"{result['cpu_seconds']:.0f}" if result.get("cpu_seconds") is not None else "-")


def table_rows(name: str, result: dict) -> list[tuple[str, ...]]:
    """The subproject's headline row, then one row per entry of its `more_rows`."""
    return [table_row(name, result)] + [table_row(f"{name}: {more['label']}", more)
                                        for more in result.get("more_rows", [])]


def image_tag(path: Path) -> str:
    if not path.is_file():
        return f"<p>missing figure: {html.escape(str(path))}</p>"
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(path.name)}">' \
           f"<figcaption>{html.escape(path.name)}</figcaption></figure>"


def write_index(demo_dir: Path, results: dict[str, dict], missing: list[str]) -> Path:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for n, r in results.items() for row in table_rows(n, r))
    sections = []
    for name, result in results.items():
        figures = "".join(image_tag(Path(f) if Path(f).is_absolute() else demo_dir / name / f)
                          for f in result.get("figures", []))
        sections.append(f'<h2 id="{name}">{name}</h2>{figures or "<p>no figures</p>"}')
    if missing:
        sections.append(f"<p>No demo result for: {html.escape(', '.join(missing))} (see their demo.log).</p>")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vlrepro demo</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;
padding:4px 8px}}img{{max-width:100%}}figure{{margin:1em 0}}</style></head>
<body><h1>vlrepro: make demo</h1><p>Toy data, brief training on CPU; each metric against its trivial baseline on the
same split.</p><table><tr>{head}</tr>{body}</table>{''.join(sections)}</body></html>
"""
    index = demo_dir / "index.html"
    tmp = index.with_name(index.name + ".tmp")
    tmp.write_text(page)
    tmp.replace(index)
    return index


def main(demo_dir: Path, subprojects: list[str] = SUBPROJECTS) -> int:
    results: dict[str, dict] = {}
    missing = []
    for name in subprojects:
        path = demo_dir / name / "demo_result.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
        else:
            missing.append(name)
    rows = [row for n, r in results.items() for row in table_rows(n, r)]
    widths = [max(len(str(row[i])) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print()
    print(line.format(*HEADER))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    if missing:
        print(f"\nno demo result for: {', '.join(missing)}")
    index = write_index(demo_dir, results, missing)
    print(f"\nfigures and logs: {demo_dir}/; everything on one page: {index}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")))
