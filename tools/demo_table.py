"""Print the `make demo` table from each subproject's `demo_result.json`.

Contract: every subproject's `make demo` writes OUT/demo_result.json with keys
`metric` (str), `before` (float), `after` (float), `seconds` (float) and optionally `figures` (list of paths).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

SUBPROJECTS = ["difnet", "dmn", "gin", "clip4idc", "spatial_captioning"]


def main(demo_dir: Path) -> int:
    rows = []
    missing = []
    for name in SUBPROJECTS:
        path = demo_dir / name / "demo_result.json"
        if not path.exists():
            missing.append(name)
            continue
        r = json.loads(path.read_text())
        rows.append((name, r["metric"], f"{r['before']:.4f}", f"{r['after']:.4f}", f"{r['seconds']:.0f}"))
    header = ("subproject", "metric (toy data)", "before", "after", "seconds")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print()
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    if missing:
        print(f"\nno demo result for: {', '.join(missing)}")
    print(f"\nfigures and logs: {demo_dir}/")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")))
