"""Test set-up: import this worktree's shared_eval, load the real caption inputs, share one METEOR scorer."""

import csv
import json
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

torch.set_num_threads(1)

DATA = REPO_ROOT / "shared_eval" / "data" / "caption_eval"  # real caption inputs, see its README


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; run with --runslow")
    config.addinivalue_line("markers", "parity: numbers checked against a second implementation; rerun by make test-portability")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _spice_jar() -> Path:
    from shared_eval.spice import spice_dir

    return spice_dir() / "spice-1.0.jar"


@pytest.fixture(scope="session")
def coco_annotations(tmp_path_factory):
    """Real COCO 2014 caption annotation files, extracted from the jar in the pycocoevalcap wheel."""
    out = tmp_path_factory.mktemp("coco")
    with zipfile.ZipFile(_spice_jar()) as z:
        for split in ("val2014", "train2014"):
            z.extract(f"coco/annotations/captions_{split}.json", out)
    return out / "coco" / "annotations"


@pytest.fixture(scope="session")
def coco_val(coco_annotations):
    return json.loads((coco_annotations / "captions_val2014.json").read_text())


@pytest.fixture(scope="session")
def demo_files(coco_annotations):
    return coco_annotations / "captions_val2014.json", DATA / "captions_val2014_fakecap_results.json"


@pytest.fixture(scope="session")
def demo_raw(demo_files):
    from shared_eval.captions import load_coco_captions

    return load_coco_captions(*demo_files)


def _abstract(cands: str, which: int):
    refs = json.loads((DATA / "abstract48S.json").read_text())
    gts: dict = {}
    for r in refs:
        gts.setdefault(r["image_id"], []).append(r["caption"])
    res: dict = {}
    for c in json.loads((DATA / cands).read_text()):
        res.setdefault(c["image_id"], []).append(c["caption"])
    return {k: gts[k] for k in res}, {k: [v[which]] for k, v in res.items()}


def _aac(name: str):
    gts, res = {}, {}
    with (DATA / name).open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            res[i] = [row["caption_predicted"]]
            gts[i] = [row[f"caption_{j}"] for j in range(1, 6)]
    return gts, res


def _spot():
    d = json.loads((DATA / "spot_total_change_captions_reformat.json").read_text())
    caps: dict = {}
    for a in d["annotations"]:
        caps.setdefault(a["image_id"], []).append(a["caption"])
    multi = {k: v for k, v in caps.items() if len(v) >= 2}
    return {k: v[1:] for k, v in multi.items()}, {k: v[:1] for k, v in multi.items()}


RAW_SETS = {
    "abstractB0": lambda: _abstract("abstract_candsB.json", 0),
    "abstractC1": lambda: _abstract("abstract_candsC.json", 1),
    "aac1": lambda: _aac("aac-metrics_example_1.csv"),
    "aac2": lambda: _aac("aac-metrics_example_2.csv"),
    "spot": _spot,
}


@pytest.fixture(scope="session")
def raw_sets(demo_raw):
    sets = {name: make() for name, make in RAW_SETS.items()}
    sets["coco_demo"] = demo_raw
    return sets


@pytest.fixture(scope="session")
def tokenized_sets(raw_sets):
    """Every fixture set tokenized by our tokenizer (gts and res in separate calls, as coco-caption)."""
    from shared_eval.captions import PTBTokenizer

    tok = PTBTokenizer()
    return {name: (tok.tokenize(g), tok.tokenize(r)) for name, (g, r) in raw_sets.items()}


@pytest.fixture(scope="session")
def meteor():
    """One METEOR scorer (the default, Python backend) for the whole session."""
    from shared_eval.captions import Meteor

    return Meteor()
