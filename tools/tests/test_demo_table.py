"""The demo table and its offline page: baseline column, lower-is-better metrics, figures embedded as data URIs."""

import base64
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import demo_table  # noqa: E402

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def write_result(folder: Path, **result) -> None:
    folder.mkdir(parents=True)
    (folder / "fig.png").write_bytes(PNG)
    (folder / "demo_result.json").write_text(json.dumps({"seconds": 12.0, "figures": [str(folder / "fig.png")],
                                                         **result}))


def test_table_and_page(tmp_path, capsys):
    write_result(tmp_path / "difnet", metric="CIDEr-D (test)", before=0.1, after=4.9, baseline=0.6,
                 baseline_name="best constant caption", lower_is_better=False)
    write_result(tmp_path / "clip4idc", metric="token cross-entropy", before=3.6, after=0.9, baseline=0.8,
                 baseline_name="always 'no change'", lower_is_better=True, cpu_seconds=30.2)
    write_result(tmp_path / "gin", metric="acc@0.5", before=0.0, after=0.5,
                 more_rows=[{"label": "ZSGNet", "metric": "acc@0.5", "before": 0.0, "after": 0.2, "baseline": 0.25,
                             "baseline_name": "largest object", "lower_is_better": False, "cpu_seconds": 60.0}])
    assert demo_table.main(tmp_path) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0].rstrip(":") in
            demo_table.SUBPROJECTS}
    assert rows["difnet"].split()[-3:] == ["yes", "12", "-"]
    assert rows["clip4idc"].split()[-3:] == ["no", "12", "30"]  # lower is better and 0.9 > 0.8
    assert "no baseline" in rows["gin"]
    assert rows["gin:"].split()[1:2] + rows["gin:"].split()[-3:] == ["ZSGNet", "no", "-", "60"]
    assert out.index("gin ") < out.index("gin: ZSGNet")
    assert "no demo result for: dmn, spatial_captioning" in out
    page = (tmp_path / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http" not in page  # nothing fetched from the network
    assert "best constant caption" in page and "dmn, spatial_captioning" in page
    assert "<td>gin: ZSGNet</td>" in page


def test_run_demos_keeps_going_when_one_fails(tmp_path, capsys):
    import run_demos

    ok = tmp_path / "repo" / "good"
    ok.mkdir(parents=True)
    (ok / "Makefile").write_text('demo:\n\t@mkdir -p $(OUT) && echo \'{"metric": "m", "before": 0, "after": 1, '
                                 '"seconds": 1, "baseline": 0.5, "baseline_name": "b", "lower_is_better": false}\' '
                                 '> $(OUT)/demo_result.json\n')
    bad = tmp_path / "repo" / "bad"
    bad.mkdir()
    (bad / "Makefile").write_text("demo:\n\t@echo broken toy set >&2; exit 3\n")
    out = tmp_path / "runs"
    assert run_demos.main(["--root", str(tmp_path / "repo"), "--out", str(out), "bad", "good"]) == 1
    printed = capsys.readouterr().out
    assert "demo: bad FAILED (exit 2" in printed and "demo: good finished" in printed
    assert "failed: bad" in printed
    assert "broken toy set" in (out / "bad" / "demo.log").read_text()
    assert "<td>good</td>" in (out / "index.html").read_text()
