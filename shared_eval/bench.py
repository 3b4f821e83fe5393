"""Speed of shared_eval against pycocoevalcap on the same input, with a check that the numbers are identical.

    python -m shared_eval.bench [--images 5000] [--refs 5] [--runs 3] [--skip-meteor] [--out runs/bench/shared_eval.json]

Input: the coco-caption demo (1000 val2014 images, fakecap results) replicated to ``--images`` images with
``--refs`` references each. Our METEOR is the Python backend (its resources already cached on disk; "cold" rows
start without them in memory), pycocoevalcap's starts the jar. Each row gives wall-clock seconds and CPU seconds
(Python, the Java tokenizer, the METEOR JVMs), the medians of ``--runs`` runs; on a shared machine the CPU column
is the steadier comparison. The SCST line times one 300-caption batch of CIDEr-D rewards with a df cached once
from all references, against pycocoevalcap's ``CiderScorer`` on the same batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .captions import Bleu, Cider, CiderD, Meteor, PTBTokenizer, Rouge, evaluate, load_coco_captions
from .meteor import shutdown as meteor_shutdown
from .meteor_align import reset_caches as reset_meteor_caches
from .spice import spice_dir

RESULTS_FILE = Path(__file__).resolve().parent / "data" / "caption_eval" / "captions_val2014_fakecap_results.json"


def _demo_inputs(images: int, refs: int) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(spice_dir() / "spice-1.0.jar") as z:
            ann = Path(z.extract("coco/annotations/captions_val2014.json", tmp))
        gts, res = load_coco_captions(ann, RESULTS_FILE)
    keys = list(gts)
    out_g, out_r = {}, {}
    for i in range(images):
        k = keys[i % len(keys)]
        key = f"{k}_{i // len(keys)}"
        out_g[key] = gts[k][:refs]
        out_r[key] = res[k]
    return out_g, out_r


def _jvm_cpu() -> float:
    """CPU seconds used so far by our live METEOR JVM (0 if none): it is not a reaped child yet."""
    from . import meteor

    proc = meteor._PROCESS
    if proc is None or not proc.alive():
        return 0.0
    try:
        fields = Path(f"/proc/{proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    """CPU seconds of this process, its finished children (the Java tokenizer, pycocoevalcap's METEOR JVM)
    and our long-lived METEOR JVM."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + _jvm_cpu()


class _Timing:
    __slots__ = ("wall", "cpu")

    def __init__(self, wall: float, cpu: float):
        self.wall, self.cpu = wall, cpu


def _timed(fn: Callable[[], object]) -> tuple[_Timing, object]:
    w, c = time.perf_counter(), _cpu()
    out = fn()
    return _Timing(time.perf_counter() - w, _cpu() - c), out


def _ref_tokenize(captions: dict) -> dict:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


def _ref_pipeline(gts: dict, res: dict, meteor: bool) -> dict:
    """What COCOEvalCap.evaluate does (without SPICE), on plain dicts."""
    from pycocoevalcap.bleu.bleu import Bleu as RefBleu
    from pycocoevalcap.cider.cider import Cider as RefCider
    from pycocoevalcap.meteor.meteor import Meteor as RefMeteor
    from pycocoevalcap.rouge.rouge import Rouge as RefRouge

    gts, res = _ref_tokenize(gts), _ref_tokenize(res)
    out = dict(zip(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"], RefBleu(4).compute_score(gts, res, verbose=0)[0]))
    if meteor:
        m = RefMeteor()
        out["METEOR"] = m.compute_score(gts, res)[0]
        del m
    out["ROUGE_L"] = RefRouge().compute_score(gts, res)[0]
    out["CIDEr"] = RefCider().compute_score(gts, res)[0]
    return {k: float(v) for k, v in out.items()}


def _scst_batch(gts: dict, res: dict, n_images: int = 60, samples: int = 5) -> tuple[list[str], list[list[str]]]:
    """300 sampled captions: 5 per image for 60 images (the other images' results stand in for samples)."""
    rng = random.Random(0)
    keys = list(gts)
    all_res = [res[k][0] for k in keys]
    cands, refs = [], []
    for k in rng.sample(keys, n_images):
        for _ in range(samples):
            cands.append(rng.choice(all_res))
            refs.append(gts[k])
    return cands, refs


def _median(timings: list[_Timing]) -> _Timing:
    return _Timing(float(np.median([t.wall for t in timings])), float(np.median([t.cpu for t in timings])))


def run(images: int, refs: int, meteor: bool, runs: int) -> dict:
    """Every row timed ``runs`` times (each run cold on both sides); the table gives the medians."""
    gts_raw, res_raw = _demo_inputs(images, refs)
    per_run = [_run_once(gts_raw, res_raw, meteor) for _ in range(runs)]
    rows = [(name, _median([r[k][1] for r in per_run]), _median([r[k][2] for r in per_run]),
             None if ok is None else all(r[k][3] for r in per_run))
            for k, (name, _, _, ok) in enumerate(per_run[0])]
    width = max(len(r[0]) for r in rows)
    print(f"shared_eval vs pycocoevalcap 1.2: {images} images x {refs} references (coco-caption demo replicated), "
          f"median of {runs} run(s)")
    print("wall: elapsed seconds; cpu: CPU seconds of Python, the Java tokenizer and the METEOR JVMs")
    print(f"{'':{width}}  {'pycocoevalcap':>20}  {'shared_eval':>20}  {'speed-up':>15}  identical")
    print(f"{'':{width}}  {'wall':>9} {'cpu':>10}  {'wall':>9} {'cpu':>10}  {'wall':>7} {'cpu':>7}")
    for name, a, b, ok in rows:
        print(f"{name:{width}}  {a.wall:8.3f}s {a.cpu:9.3f}s  {b.wall:8.3f}s {b.cpu:9.3f}s  "
              f"{a.wall / b.wall:6.1f}x {a.cpu / max(b.cpu, 1e-9):6.1f}x  {'n/a' if ok is None else 'yes' if ok else 'NO'}")
    return {"images": images, "refs": refs, "runs": runs, "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
            "rows": [{"what": n, "pycocoevalcap_wall_s": a.wall, "pycocoevalcap_cpu_s": a.cpu,
                      "shared_eval_wall_s": b.wall, "shared_eval_cpu_s": b.cpu,
                      "speedup_wall": a.wall / b.wall, "speedup_cpu": a.cpu / max(b.cpu, 1e-9), "identical": ok}
                     for n, a, b, ok in rows],
            "runs_detail": [[{"what": n, "pycocoevalcap_wall_s": a.wall, "pycocoevalcap_cpu_s": a.cpu,
                              "shared_eval_wall_s": b.wall, "shared_eval_cpu_s": b.cpu, "identical": ok}
                             for n, a, b, ok in r] for r in per_run]}


def _run_once(gts_raw: dict, res_raw: dict, meteor: bool) -> list[tuple[str, _Timing, _Timing, bool | None]]:
    from pycocoevalcap.bleu.bleu import Bleu as RefBleu
    from pycocoevalcap.cider.cider import Cider as RefCider
    from pycocoevalcap.cider.cider_scorer import CiderScorer
    from pycocoevalcap.meteor.meteor import Meteor as RefMeteor
    from pycocoevalcap.rouge.rouge import Rouge as RefRouge

    rows: list[tuple[str, _Timing, _Timing, bool | None]] = []

    # tokenizer (references and results: two calls each, as coco-caption)
    t_ref, (g_ref, r_ref) = _timed(lambda: (_ref_tokenize(gts_raw), _ref_tokenize(res_raw)))
    tok = PTBTokenizer()
    t_ours, (g_tok, r_tok) = _timed(lambda: (tok.tokenize(gts_raw), tok.tokenize(res_raw)))
    rows.append(("PTB tokenizer", t_ref, t_ours, g_ref == g_tok and r_ref == r_tok))
    gts, res = g_ref, r_ref

    t_ref, ref_out = _timed(lambda: RefBleu(4).compute_score(gts, res, verbose=0))
    t_ours, out = _timed(lambda: Bleu(4).compute_score(gts, res))
    rows.append(("BLEU-1..4", t_ref, t_ours, list(ref_out[0]) == list(out[0]) and np.array_equal(ref_out[1], out[1])))

    if meteor:
        t_ref, ref_out = _timed(lambda: RefMeteor().compute_score(gts, res))
        reset_meteor_caches()
        t_ours, out = _timed(lambda: Meteor().compute_score(gts, res))
        rows.append(("METEOR (jar: fresh JVM; ours: Python, cold)", t_ref, t_ours, ref_out == (out[0], out[1])))
        t_ours2, out2 = _timed(lambda: Meteor().compute_score(gts, res))
        rows.append(("METEOR (ours: 2nd call, resources loaded)", t_ref, t_ours2, ref_out == (out2[0], out2[1])))

    t_ref, ref_out = _timed(lambda: RefRouge().compute_score(gts, res))
    t_ours, out = _timed(lambda: Rouge().compute_score(gts, res))
    rows.append(("ROUGE-L", t_ref, t_ours, ref_out[0] == out[0] and np.array_equal(ref_out[1], out[1])))

    t_ref, ref_out = _timed(lambda: RefCider().compute_score(gts, res))
    t_ours, out = _timed(lambda: Cider().compute_score(gts, res))
    rows.append(("CIDEr-D", t_ref, t_ours, ref_out[0] == out[0] and np.array_equal(ref_out[1], out[1])))

    if meteor:
        meteor_shutdown()
        reset_meteor_caches()  # end to end starts as a fresh process would (the jar side starts a fresh JVM)
    t_ref, ref_scores = _timed(lambda: _ref_pipeline(gts_raw, res_raw, meteor))
    t_ours, scores = _timed(lambda: evaluate(gts_raw, res_raw, meteor=meteor))
    rows.append(("end to end" + (" (cold both)" if meteor else " (no METEOR)"), t_ref, t_ours,
                 ref_scores == scores))
    if meteor:
        t_ours2, scores2 = _timed(lambda: evaluate(gts_raw, res_raw, meteor=True))
        rows.append(("end to end (ours: 2nd call)", t_ref, t_ours2, ref_scores == scores2))
        t_ref_nm, ref_nm = _timed(lambda: _ref_pipeline(gts_raw, res_raw, False))
        t_ours_nm, ours_nm = _timed(lambda: evaluate(gts_raw, res_raw, meteor=False))
        rows.append(("end to end (no METEOR)", t_ref_nm, t_ours_nm, ref_nm == ours_nm))

    # SCST: df cached once from all references, then one 300-caption batch
    cands, batch_refs = _scst_batch(gts, res)
    scorer = CiderD.from_references(list(gts.values()))
    t_cold, cold = _timed(lambda: scorer.score(cands, batch_refs))

    def ref_batch():
        s = CiderScorer(n=4, sigma=6.0)
        for c, r in zip(cands, batch_refs):
            s += (c, r)
        return s.compute_score()

    # best of 5 on both sides: these runs are short enough for other processes to distort a single one
    t_ours = min((_timed(lambda: scorer.score(cands, batch_refs))[0] for _ in range(5)), key=lambda t: t.wall)
    t_ref = min((_timed(ref_batch)[0] for _ in range(5)), key=lambda t: t.wall)
    # the numbers differ by design (cached corpus df vs the batch's own df): identical is "n/a"
    assert np.array_equal(cold, scorer.score(cands, batch_refs))
    rows.append(("SCST reward, 300 captions (best of 5)", t_ref, t_ours, None))
    rows.append(("SCST reward, 300 captions (first call)", t_ref, t_cold, None))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared_eval.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--refs", type=int, default=5)
    parser.add_argument("--skip-meteor", action="store_true", help="leave METEOR out (pycocoevalcap then needs no Java)")
    parser.add_argument("--runs", type=int, default=3, help="times to run every row (the table gives medians)")
    parser.add_argument("--out", default=None, help="json output (default: $ROOT/runs/bench/shared_eval.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    result = run(args.images, args.refs, not args.skip_meteor, args.runs)
    out = Path(args.out) if args.out else Path(os.environ.get("ROOT", Path.cwd())) / "runs" / "bench" / "shared_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"written {out}")


if __name__ == "__main__":
    main()
