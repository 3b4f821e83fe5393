"""eval.py writes what the original writes, and checks its inputs before decoding anything."""
import json
import pickle
from pathlib import Path

import pytest

import eval as eval_script
from models.transformer import TransformerModel
from toy_runs import data_args


def eval_argv(xe_run: Path, toy: Path, *extra: str) -> list[str]:
    return ["--device", "cpu", "--model", str(xe_run / "model.pth"), "--infos_path", str(xe_run / "infos_xe.pkl"),
            *data_args(toy)[2:10], "--language_eval", "1", "--meteor", "0", "--dump_images", "0", "--beam_size", "1",
            "--ann_file", str(toy / "annotations" / "captions_val2014.json"), "--verbose_beam", "0", *extra]


def test_results_file_has_the_originals_img_to_eval(xe_run, toy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    eval_script.main(eval_argv(xe_run, toy_dir, "--image_root", str(toy_dir / "images")))
    results = json.loads((tmp_path / "eval_results" / "xe_test.json").read_text())
    assert set(results) == {"overall", "imgToEval"}
    preds = json.loads((tmp_path / "vis" / "vis.json").read_text())
    per_image = results["imgToEval"]
    assert sorted(per_image) == sorted(str(p["image_id"]) for p in preds)
    for p in preds:
        entry = per_image[str(p["image_id"])]
        assert list(entry) == ["image_id", "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr", "caption"]
        assert entry["image_id"] == p["image_id"] and entry["caption"] == p["caption"]
    cider = [e["CIDEr"] for e in per_image.values()]
    assert results["overall"]["CIDEr"] == pytest.approx(sum(cider) / len(cider), rel=1e-12)
    assert len(set(cider)) > 1
    # --image_root: the original's report data, <id>_<split>_report_data.pkl
    report = pickle.loads((tmp_path / "eval_results" / "xe_test_report_data.pkl").read_bytes())
    assert report["model_id"] == "xe" and report["split"] == "test" and report["image_root"] == str(toy_dir / "images")
    assert report["predictions"] == preds
    assert report["coco_eval"]["eval"] == results["overall"]
    first = preds[0]["image_id"]
    assert report["coco_eval"]["imgToEval"][first]["CIDEr"] == per_image[str(first)]["CIDEr"]
    assert set(report["coco_eval"]["gts"]) == {p["image_id"] for p in preds}


def _fails_before_decoding(argv: list[str], monkeypatch, capsys) -> str:
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoding started before the inputs were checked")

    monkeypatch.setattr(TransformerModel, "sample", no_decoding)
    with pytest.raises(SystemExit) as exc:
        eval_script.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_missing_ann_file_stops_before_decoding(xe_run, toy_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "coco-caption" / "captions_val2014.json"
    argv = eval_argv(xe_run, toy_dir) + ["--ann_file", str(missing)]
    line = _fails_before_decoding(argv, monkeypatch, capsys)
    assert str(missing) in line and "--ann_file" in line
    assert not (tmp_path / "vis").exists() and not (tmp_path / "eval_results").exists()


def test_ann_file_that_is_not_coco_captions(xe_run, toy_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "captions.json"
    bad.write_text(json.dumps({"images": []}))
    line = _fails_before_decoding(eval_argv(xe_run, toy_dir) + ["--ann_file", str(bad)], monkeypatch, capsys)
    assert str(bad) in line and "captions_val2014.json" in line


def test_missing_image_root_stops_before_decoding(xe_run, toy_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = _fails_before_decoding(eval_argv(xe_run, toy_dir, "--image_root", str(tmp_path / "nope")), monkeypatch,
                                  capsys)
    assert str(tmp_path / "nope") in line and "--image_root" in line


@pytest.mark.slow
def test_compiled_decoding_writes_the_same_captions(xe_run, toy_dir, tmp_path, monkeypatch):
    """eval.py --compile 1 (torch.compile of the cached decoder step) captions the test images as eager does."""
    written = []
    for flag in ("0", "1"):
        (tmp_path / flag).mkdir()
        monkeypatch.chdir(tmp_path / flag)
        eval_script.main(eval_argv(xe_run, toy_dir, "--language_eval", "0", "--beam_size", "2", "--compile", flag))
        written.append(json.loads((tmp_path / flag / "vis" / "vis.json").read_text()))
    assert written[0] == written[1] and len(written[0]) > 5
