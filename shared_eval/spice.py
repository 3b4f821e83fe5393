"""SPICE through pycocoevalcap's ``spice-1.0.jar`` (optional: it needs Stanford CoreNLP 3.6.0)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

from .bleu import _check

__all__ = ["Spice", "SpiceUnavailableError", "spice_dir"]

CORENLP_URL = "http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip"
CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


class SpiceUnavailableError(RuntimeError):
    """Java, the SPICE jar or the Stanford CoreNLP 3.6.0 jars it needs are missing."""


def spice_dir() -> Path:
    spec = importlib_util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise SpiceUnavailableError("SPICE needs the jar shipped with pycocoevalcap: pip install pycocoevalcap==1.2")
    return Path(list(spec.submodule_search_locations)[0]) / "spice"


def _check_available() -> Path:
    d = spice_dir()
    missing = [j for j in CORENLP_JARS if not (d / "lib" / j).is_file()]
    if missing:
        raise SpiceUnavailableError(
            f"SPICE needs Stanford CoreNLP 3.6.0, which is not installed: download {CORENLP_URL} (about 400 MB), "
            f"and copy stanford-corenlp-full-2015-12-09/{CORENLP_JARS[0]} and {CORENLP_JARS[1]} into {d / 'lib'}/")
    if shutil.which("java") is None:
        raise SpiceUnavailableError("SPICE needs Java 8+ on PATH")
    return d


def _to_float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


class Spice:
    """pycocoevalcap-compatible SPICE: ``compute_score(gts, res) -> (mean F, per-item score dicts)``.

    Unlike pycocoevalcap it never downloads anything: without CoreNLP 3.6.0 it raises
    ``SpiceUnavailableError`` saying what to download and where to put it. Per-item results follow the
    key order of ``gts``.
    """

    def __init__(self) -> None:
        self._dir = _check_available()

    def compute_score(self, gts: Mapping, res: Mapping):
        _check(gts, res)
        keys = list(gts)
        data = [{"image_id": i, "test": res[k][0], "refs": gts[k]} for i, k in enumerate(keys)]
        with tempfile.TemporaryDirectory(prefix="spice_") as tmp:
            inp, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
            inp.write_text(json.dumps(data))
            # No -cache: its LMDB store fails on Java 16+ (tylin/coco-caption#59).
            cmd = ["java", "-jar", "-Xmx8G", "spice-1.0.jar", str(inp), "-out", str(out), "-subset", "-silent"]
            proc = subprocess.run(cmd, cwd=self._dir, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SpiceUnavailableError(f"the SPICE jar failed (status {proc.returncode}): "
                                            f"{proc.stderr.strip().splitlines()[-1:]}")
            results = json.loads(out.read_text())
        by_id = {item["image_id"]: item["scores"] for item in results}
        per_item = [{cat: {k: _to_float(v) for k, v in s.items()} for cat, s in by_id[i].items()}
                    for i in range(len(keys))]
        corpus = float(np.mean(np.array([_to_float(by_id[i]["All"]["f"]) for i in range(len(keys))])))
        return corpus, per_item

    def method(self) -> str:
        return "SPICE"
