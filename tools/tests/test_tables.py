"""make tables (tools/tables.py): the missing-data report, the atomic results files, and the TOY=1 path for one row
per subproject, each on a tiny toy set with a toy checkpoint written in the format make P-demo writes (by the
subproject's own training script, for the fewest steps it allows), never by make demo itself.

CPU cost (this 2-core AMD EPYC, one thread): difnet, clip4idc and spatial_captioning about 11 s each, clip4idc's
Spot-the-Diff row about 9 s; dmn (three evaluation processes) about 22 s and gin about 19 s, all in make test so that
every subproject's row path is checked there; gin's ZSGNet row (about 17 s, the same path with the other config) is
marked slow (--runslow)."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import tables

ROOT = Path(__file__).resolve().parents[2]
SUBPROJECTS = ("difnet", "dmn", "gin", "clip4idc", "spatial_captioning")
STEP_TIMEOUT = 600  # seconds per command: a hung evaluation fails the test instead of blocking make test


def run_python(args: list[str], cwd: Path, timeout: float = STEP_TIMEOUT) -> None:
    """A subproject script, as make would run it (repository root and the script's folder importable)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{cwd}", **tables.THREADS_ENV}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args[:2]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def toy_data(tmp: Path, module: str, subproject: str, size: int) -> Path:
    out = tmp / "toy" / subproject
    run_python(["-m", f"toydata.{module}", "--out", str(out), "--size", str(size)], ROOT)
    return out


def run_toy_rows(tmp: Path, only: str) -> dict:
    """tools/tables.py --toy for ``only`` against tmp's toy data and demo folder; its toy section of results.json."""
    status = tables.main(["--toy", "--only", only, "--toy_dir", str(tmp / "toy"), "--demo_dir", str(tmp / "demo"),
                          "--runs", str(tmp / "runs"), "--no_make_demo", "--timeout", str(STEP_TIMEOUT)])
    results = json.loads((tmp / "runs" / "results.json").read_text())
    assert status == 0, results["toy"]["rows"]
    assert "TOY" in (tmp / "runs" / "results.md").read_text()
    return {row["id"]: row for row in results["toy"]["rows"]}


def step_log(tmp: Path, row_id: str, step: int = 0) -> str:
    return (tmp / "runs" / "toy" / row_id / f"step{step}.log").read_text()


def figure(row: dict, name: str) -> float:
    value = next(f["ours"] for f in row["figures"] if f["name"] == name)
    assert value is not None, (name, row)
    return value


# --- cheap: the plan, the missing-data report, the atomic write ---------------------------------------------------

def test_rows_file_covers_every_subproject_and_parses():
    rows = tables.load_rows()
    assert {row.subproject for row in rows} == set(SUBPROJECTS)
    assert len({row.id for row in rows}) == len(rows)
    for row in rows:  # every placeholder of every command resolves in both modes
        for mode in tables.MODES:
            places = tables.Places(python="python", root=ROOT, data=Path("/d"), toy=Path("/t"), demo=Path("/m"),
                                   runs=Path("/r"), device="cpu")
            if mode == "toy" and row.toy is None:
                continue
            tables.placeholder_commands(row, mode, places)


def test_nothing_downloaded_exits_0_and_names_each_rows_make_target(tmp_path):
    status = tables.main(["--data_dir", str(tmp_path / "no_data"), "--runs", str(tmp_path / "runs")])
    assert status == 0
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    rows = results["real"]["rows"]
    assert len(rows) == len(tables.load_rows())
    for row in rows:
        assert row["status"] == "missing data", row
        assert any(f"make {row['subproject']}-data" in need for need in row["needs"]), row
        assert all(f["ours"] is None for f in row["figures"])
        assert row["commands"], row  # the command it would run is shown
    markdown = (tmp_path / "runs" / "results.md").read_text()
    for subproject in SUBPROJECTS:
        assert f"make {subproject}-data" in markdown
    assert "days on a GPU, not run by make tables" in markdown  # spatial_captioning: a training recipe, not run
    assert not (tmp_path / "runs" / "real").exists()  # nothing was evaluated


def test_partial_runs_keep_earlier_rows_and_write_atomically(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    earlier = {"toy": {"date": "earlier", "rows": []}}
    (runs / "results.json").write_text(json.dumps(earlier))
    assert tables.main(["--data_dir", str(tmp_path / "no_data"), "--runs", str(runs), "--only", "difnet"]) == 0
    written = json.loads((runs / "results.json").read_text())
    assert written["toy"] == earlier["toy"]
    assert [r["id"] for r in written["real"]["rows"]] == ["difnet-coco-karpathy-test"]
    assert sorted(p.name for p in runs.iterdir()) == ["results.json", "results.md"]  # no temporary file left
    assert tables.main(["--data_dir", str(tmp_path / "no_data"), "--runs", str(runs), "--only", "clip4idc"]) == 0
    ids = [r["id"] for r in json.loads((runs / "results.json").read_text())["real"]["rows"]]
    assert ids == ["difnet-coco-karpathy-test", "clip4idc-clevr-caption", "clip4idc-spot-caption",
                   "clip4idc-clevr-retrieval"]  # a partial run keeps the earlier rows, in the rows file's order

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(tables.os, "replace", crash)
    before = (runs / "results.json").read_text()
    with pytest.raises(OSError):
        tables.main(["--data_dir", str(tmp_path / "no_data"), "--runs", str(runs), "--only", "gin"])
    assert (runs / "results.json").read_text() == before  # a failed write leaves the previous file whole
    assert sorted(p.name for p in runs.iterdir()) == ["results.json", "results.md"]


def test_unknown_placeholder_is_one_line_and_exit_2(tmp_path, capsys):
    rows = tmp_path / "rows.toml"
    rows.write_text(HANGING_ROW.replace("{python} -c", "{pyhton} -c"))
    assert tables.main(["--rows", str(rows), "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "placeholder {pyhton}" in err and len(err.strip().splitlines()) == 1


def test_unknown_row_is_one_line_and_exit_2(tmp_path, capsys):
    assert tables.main(["--only", "nosuchrow", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--only nosuchrow" in err and len(err.strip().splitlines()) == 1


def test_missing_python_is_one_line_and_exit_2(tmp_path, capsys):
    assert tables.main(["--python", str(tmp_path / "no_venv" / "python"), "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--python" in err and "make setup" in err and len(err.strip().splitlines()) == 1


def test_toy_row_without_checkpoint_names_make_demo(tmp_path):
    status = tables.main(["--toy", "--only", "difnet", "--toy_dir", str(tmp_path / "toy"), "--demo_dir",
                          str(tmp_path / "demo"), "--runs", str(tmp_path / "runs"), "--no_make_demo"])
    assert status == 0
    row = json.loads((tmp_path / "runs" / "results.json").read_text())["toy"]["rows"][0]
    assert row["status"] == "missing toy checkpoint" and row["needs"] == ["make difnet-demo"]


HANGING_ROW = r'''
[[rows]]
id = "hangs"
subproject = "difnet"
label = "a command that hangs"
steps = ["""{python} -c 'import subprocess, time; child = subprocess.Popen(["sleep", "60"]); \
print("child", child.pid, flush=True); time.sleep(60)'"""]
figures = [{ name = "x", paper = 1.0, printed_regex = "x ([0-9.]+)" }]
toy = { }
'''


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_hanging_command_is_killed_with_its_children(tmp_path):
    rows = tmp_path / "rows.toml"
    rows.write_text(HANGING_ROW)
    start = time.monotonic()
    status = tables.main(["--toy", "--rows", str(rows), "--toy_dir", str(tmp_path / "toy"), "--demo_dir",
                          str(tmp_path / "demo"), "--runs", str(tmp_path / "runs"), "--timeout", "2"])
    assert status == 1 and time.monotonic() - start < 30
    row = json.loads((tmp_path / "runs" / "results.json").read_text())["toy"]["rows"][0]
    assert row["status"] == "failed" and "status 124" in row["note"]
    log = (tmp_path / "runs" / "toy" / "hangs" / "step0.log").read_text()
    assert "killed after 2.0 s" in log
    child = int(re.findall(r"child (\d+)", log)[0])
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)  # the command's own child went with it


def test_last_numbered_file(tmp_path):
    for n in (0, 2, 10):
        (tmp_path / f"pytorch_model.bin.{n}").write_text("")
    (tmp_path / "pytorch_model.bin.x").write_text("")
    assert tables.resolve_last(f"{tmp_path}/pytorch_model.bin.{{last}}") == f"{tmp_path}/pytorch_model.bin.10"


def test_figure_readers():
    printed = "loading\n{'BLEU': [0.5, 0.25, 0.125, 0.1], 'ROUGE': 0.3, 'CIDEr': 1.5}\n"
    cider = tables.Figure(name="C", paper=0, step=0, scale=100, printed_dict="CIDEr")
    assert tables.read_figure(cider, printed, {}) == 150.0
    bleu4 = tables.Figure(name="B4", paper=0, step=0, scale=100, printed_dict="BLEU.3")
    assert tables.read_figure(bleu4, printed, {}) == pytest.approx(10.0)
    accuracy = tables.Figure(name="A", paper=0, step=0, scale=100, printed_regex=r"accuracy ([0-9.]+)")
    assert tables.read_figure(accuracy, "accuracy 0.5000 (1/2)\naccuracy 0.7500 (3/4)\n", {}) == 75.0
    with pytest.raises(ValueError):
        tables.read_figure(accuracy, "nothing\n", {})


# --- the TOY=1 path, one row per subproject ----------------------------------------------------------------------

def test_toy_difnet(tmp_path):
    toy = toy_data(tmp_path, "coco_grid", "difnet", 20)
    demo = tmp_path / "demo" / "difnet"
    # train.py's own checkpoint (<exp>_best.pth, sizes recorded in it) and vocabulary, after one epoch
    run_python(["train.py", "--mode", "difnet_lrp", "--exp_name", "DIFNet_lrp_toy", "--features_path",
                str(toy / "coco_grid_feats2.hdf5"), "--pixel_path", str(toy / "segmentations"), "--annotation_folder",
                str(toy / "annotations"), "--vocab_path", str(demo / "vocab.pkl"), "--model_path", str(demo / "models"),
                "--d_model", "16", "--d_ff", "32", "--head", "2", "--workers", "0", "--no_meteor", "--max_epochs", "1",
                "--logs_folder", str(tmp_path / "tb")], ROOT / "difnet")
    row = run_toy_rows(tmp_path, "difnet-coco-karpathy-test")["difnet-coco-karpathy-test"]
    printed = ast.literal_eval(re.findall(r"^(\{'BLEU'.*\})$", step_log(tmp_path, row["id"]), re.M)[-1])
    for name, value in (("BLEU-1", printed["BLEU"][0]), ("BLEU-4", printed["BLEU"][3]), ("METEOR", printed["METEOR"]),
                        ("ROUGE-L", printed["ROUGE"]), ("CIDEr", printed["CIDEr"])):
        assert figure(row, name) == pytest.approx(100 * value, abs=1e-4)
    assert figure(row, "ROUGE-L") > 0 and figure(row, "METEOR") > 0  # so that the scale is checked too


DMN_TOY_MODEL = ["--backend", "dpn_toy", "--vis-size", "560", "--num-filters", "10", "--lang-layers", "3", "--mix-we",
                 "--size", "192", "--emb-size", "64", "--hid-size", "64", "--mixed-size", "64",
                 "--hid-mixed-size", "64", "--upsamp-width", "32", "--no-pretrained", "--per-pixel-msru",
                 "--workers", "0", "--accum-iters", "1"]


def test_toy_dmn(tmp_path):
    toy = toy_data(tmp_path, "refer", "dmn", 10)  # 7 train, 1 val, 1 testA, 1 testB images
    weights = tmp_path / "demo" / "dmn" / "weights" / "high_res"
    none = str(tmp_path / "none.pth")
    # the demo's high-res stage for one step: train.py writes dmn_best_weights.pth after the epoch's evaluation
    run_python(["-m", "dmn_pytorch.train", "--data", str(toy), "--split-root", str(toy / "splits"), "--dataset", "unc",
                "--val", "val", *DMN_TOY_MODEL, "--high-res", "--save-folder", str(weights), "--snapshot", none,
                "--optim-snapshot", none, "--epochs", "1", "--max-batches-per-epoch", "1",
                "--backup-iters", "1000000000"],
               ROOT / "dmn")
    row = run_toy_rows(tmp_path, "dmn-unc")["dmn-unc"]
    for step, split in enumerate(("val", "testA", "testB")):
        printed = float(re.findall(r"Maximum IoU: ([0-9.]+)", step_log(tmp_path, row["id"], step))[-1])
        assert figure(row, f"IoU {split}") == pytest.approx(100 * printed, abs=1e-4)
        assert printed > 0  # at threshold 0 every pixel is foreground: the IoU is the target's share of the image


GIN_SAVE = """
import sys
import time
from pathlib import Path
from config import DEFAULT_CFG, load_config, merge_overrides, validate, validate_extras
from demo import toy_overrides
from main_dist import Run
toy, tmp = Path(sys.argv[1]), Path(sys.argv[2])
cfg = merge_overrides(load_config(DEFAULT_CFG), toy_overrides(toy, tmp, {"seed": "0"}))
validate(cfg)
validate_extras(cfg)
run = Run("demo", cfg)
run.save(*run.make_optimizer())
"""


def test_toy_gin(tmp_path):
    toy = toy_data(tmp_path, "zsgnet_csv", "gin", 5)
    # a freshly initialised toy GIN saved by main_dist's own Run.save, where make gin-demo saves (tmp/models/demo.pth)
    run_python(["-c", GIN_SAVE, str(toy), str(tmp_path / "demo" / "gin" / "tmp")], ROOT / "gin" / "code")
    row = run_toy_rows(tmp_path, "gin-referit")["gin-referit"]
    for step, split in ((1, "val"), (2, "test")):
        correct, total = re.findall(r"accuracy [0-9.]+ \((\d+)/(\d+)\)", step_log(tmp_path, row["id"], step))[-1]
        assert int(total) > 0  # (a freshly initialised GIN scores 0 here: this checks the path, not the scale)
        assert figure(row, f"Acc@0.5 {split}") == pytest.approx(100 * int(correct) / int(total), abs=0.01)


ZSGNET_SAVE = """
import sys
from pathlib import Path
from demo import ZSGNET_CFG, train_briefly
toy, tmp = Path(sys.argv[1]), Path(sys.argv[2])
train_briefly(toy, tmp, cfg_file=ZSGNET_CFG, uid="demo_zsgnet", extra={"epochs": "1", "max_train_batches": "1"})
"""


@pytest.mark.slow
def test_toy_zsgnet(tmp_path):
    toy = toy_data(tmp_path, "zsgnet_csv", "gin", 5)
    # make gin-demo's ZSGNet stage for one batch: main_dist's Run saves it as tmp/models/demo_zsgnet.pth (no GIN
    # checkpoint beside it, so the row can only have read this one)
    run_python(["-c", ZSGNET_SAVE, str(toy), str(tmp_path / "demo" / "gin" / "tmp")], ROOT / "gin" / "code")
    row = run_toy_rows(tmp_path, "zsgnet-referit")["zsgnet-referit"]
    assert "arch=zsgnet" in step_log(tmp_path, row["id"])
    for step, split in ((1, "val"), (2, "test")):
        correct, total = re.findall(r"accuracy [0-9.]+ \((\d+)/(\d+)\)", step_log(tmp_path, row["id"], step))[-1]
        assert int(total) > 0
        assert figure(row, f"Acc@0.5 {split}") == pytest.approx(100 * int(correct) / int(total), abs=0.01)


CLIP4IDC_TOY_MODEL = ["--clip_random_init", "--compact_vocab", "--clip_embed_dim", "64", "--clip_vision_width", "64",
                      "--clip_vision_layers", "4", "--intra_num_hidden_layers", "2", "--clip_patch_size", "16",
                      "--clip_text_width", "64", "--clip_text_layers", "2", "--image_resolution", "64",
                      "--decoder_model", "decoder-tiny", "--cache_images", "--num_thread_reader", "0",
                      "--max_words", "16", "--freeze_layer_num", "-1", "--datatype", "clevr"]


def test_toy_clip4idc(tmp_path):
    # make clip4idc-demo trains on a toy set of its own, in runs/demo/clip4idc/toy: the rows read it there
    toy = tmp_path / "demo" / "clip4idc" / "toy"
    run_python(["-m", "toydata.idc", "--out", str(toy), "--size", "16"], ROOT)
    data = str(toy / "clevr_change" / "data")
    # stage 1 for one epoch, as make clip4idc-demo runs it: pytorch_model.bin.0 in retrieval/
    run_python(["main_task_retrieval.py", "--do_train", "--epochs", "1", "--batch_size", "16", "--data_path", data,
                "--features_path", data, "--output_dir", str(tmp_path / "demo" / "clip4idc" / "retrieval"),
                *CLIP4IDC_TOY_MODEL], ROOT / "clip4idc")
    row = run_toy_rows(tmp_path, "clip4idc-clevr-retrieval")["clip4idc-clevr-retrieval"]
    printed = float(re.findall(r">>>  R@1: ([0-9.]+)", step_log(tmp_path, row["id"]))[-1])
    assert figure(row, "text->pair R@1") == pytest.approx(printed, abs=0.05)  # the log prints one decimal


# about 9 s CPU (this 2-core AMD EPYC, one thread), so it runs in the default suite
def test_toy_clip4idc_spot(tmp_path):
    # make clip4idc-demo's Spot-the-Diff stage: toydata.idc's Spot layout in runs/demo/clip4idc/toy, and stage 2 with
    # --datatype spot for one epoch (from scratch here, from its own stage 1 in the demo): spot_caption/
    toy = tmp_path / "demo" / "clip4idc" / "toy"
    run_python(["-m", "toydata.idc", "--out", str(toy), "--size", "16"], ROOT)
    spot = toy / "spot-the-diff"
    run_python(["main_task_caption.py", "--do_train", "--epochs", "1", "--batch_size", "16", "--data_path", str(spot),
                "--features_path", str(spot / "images"), "--gt_dir", str(toy / "gt"), "--no_meteor", "--output_dir",
                str(tmp_path / "demo" / "clip4idc" / "spot_caption"), *CLIP4IDC_TOY_MODEL, "--datatype", "spot"],
               ROOT / "clip4idc")
    row = run_toy_rows(tmp_path, "clip4idc-spot-caption")["clip4idc-spot-caption"]
    log = step_log(tmp_path, row["id"])
    assert "--datatype spot" in row["commands"][0] and "spot_caption/pytorch_model.bin.0" in row["commands"][0]
    bleu4 = float(re.findall(r"\[total\] BLEU_1: .*, BLEU_4: ([0-9.]+)", log)[-1])
    cider = float(re.findall(r"\[total\] METEOR: nan, ROUGE_L: [0-9.]+, CIDEr: ([0-9.]+)", log)[-1])
    # the log prints four decimals (METEOR nan: --no_meteor from toy_flags)
    assert figure(row, "BLEU-4") == pytest.approx(100 * bleu4, abs=0.01)
    assert figure(row, "CIDEr") == pytest.approx(100 * cider, abs=0.01)
    assert figure(row, "CIDEr") > 0  # so that the scale is checked too (BLEU-4 is 0 after one step)
    captions = json.loads((tmp_path / "runs" / "toy" / row["id"] / "hyp_ep_eval.json").read_text())
    test_ids = {f"{e['img_id']}.png" for e in json.loads((spot / "reformat_test.json").read_text())}
    assert {c["image_id"] for c in captions} == test_ids  # every Spot test pair, named as the Spot ground truth


def test_toy_spatial_captioning(tmp_path):
    toy = toy_data(tmp_path, "cocotalk", "spatial_captioning", 12)
    ckpt = tmp_path / "demo" / "spatial_captioning" / "checkpoints" / "scst"
    # train.py for two iterations under the demo's run id "xe": model.pth and infos_xe.pkl where the demo's SCST stage
    # leaves them
    run_python(["train.py", "--id", "xe", "--caption_model", "spatial_pe", "--input_json", str(toy / "cocotalk.json"),
                "--input_img_feat_dir", str(toy / "cocobu_att"), "--input_label_h5", str(toy / "cocotalk_label.h5"),
                "--input_grid_vec_dir", str(toy / "cocobu_box_vec"), "--checkpoint_path", str(ckpt),
                "--num_layers", "1", "--input_encoding_size", "32", "--ff_size", "64", "--num_grids", "144",
                "--device", "cpu", "--batch_size", "4", "--max_iters", "2", "--max_epochs", "1000",
                "--save_checkpoint_every", "100000", "--perform_validation_every", "100000", "--meteor", "0",
                "--val_images_use", "4"], ROOT / "spatial_captioning")
    row = run_toy_rows(tmp_path, "spatial_captioning")["spatial-captioning-coco-karpathy-test"]
    printed = json.loads(re.findall(r" eval (\{.*\})", step_log(tmp_path, row["id"]))[-1])
    assert figure(row, "CIDEr-D") == pytest.approx(100 * printed["CIDEr"], abs=1e-4)
    assert figure(row, "BLEU-4") == pytest.approx(100 * printed["Bleu_4"], abs=1e-4)
    assert figure(row, "CIDEr-D") > 0  # so that the scale is checked too
