"""The prepro scripts reproduce the formats (checked against the toy writer's independent implementation)."""
import base64
import csv
import json
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from misc.scorers import CiderD

SUB = Path(__file__).resolve().parents[1]
PY = sys.executable


def run(args, cwd=SUB):
    return subprocess.run([PY, *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_prepro_labels_matches_the_format(toy_dir, tmp_path):
    r = run(["scripts/prepro_labels.py", "--input_json", toy_dir / "dataset_coco.json", "--output_json",
             tmp_path / "cocotalk.json", "--output_h5", tmp_path / "cocotalk", "--images_root", toy_dir / "images"])
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "cocotalk.json").read_text()) == json.loads((toy_dir / "cocotalk.json").read_text())
    with h5py.File(tmp_path / "cocotalk_label.h5") as mine, h5py.File(toy_dir / "cocotalk_label.h5") as ref:
        assert set(mine) == set(ref) == {"labels", "label_start_ix", "label_end_ix", "label_length"}
        for key in ref:
            assert mine[key].dtype == np.uint32
            np.testing.assert_array_equal(mine[key][:], ref[key][:])


def test_prepro_ngrams_matches_the_format(toy_dir, tmp_path):
    r = run(["scripts/prepro_ngrams.py", "--input_json", toy_dir / "dataset_coco.json", "--dict_json",
             toy_dir / "cocotalk.json", "--output_pkl", tmp_path / "coco-train", "--split", "train"])
    assert r.returncode == 0, r.stderr
    for kind in ("words", "idxs"):
        mine = pickle.loads((tmp_path / f"coco-train-{kind}.p").read_bytes())
        ref = pickle.loads((toy_dir / f"coco-train-{kind}.p").read_bytes())
        assert mine["ref_len"] == ref["ref_len"]
        assert mine["document_frequency"] == ref["document_frequency"]


def test_prepro_ngrams_pickles_defaultdicts_and_our_reader_takes_both(toy_dir, tmp_path):
    """self-critical.pytorch pickles document_frequency as defaultdict(float) (protocol 2), and ruotianluo's CiderD
    looks unseen n-grams up with []: with a plain dict it raised KeyError. CiderD.from_pickle reads either."""
    r = run(["scripts/prepro_ngrams.py", "--input_json", toy_dir / "dataset_coco.json", "--dict_json",
             toy_dir / "cocotalk.json", "--output_pkl", tmp_path / "coco-train", "--split", "train"])
    assert r.returncode == 0, r.stderr
    raw = (tmp_path / "coco-train-idxs.p").read_bytes()
    assert raw[:2] == b"\x80\x02"
    data = pickle.loads(raw)
    assert data["document_frequency"].default_factory is float and isinstance(data["ref_len"], int)
    assert data["document_frequency"][("12345", "0")] == 0.0
    assert pickle.loads((tmp_path / "coco-train-words.p").read_bytes())["document_frequency"][("zebra",)] == 0.0
    plain = tmp_path / "plain.p"
    plain.write_bytes(pickle.dumps({**data, "document_frequency": dict(data["document_frequency"])}))
    cands, refs = ["1 2 3 0", "4 5 0"], [["1 2 3 0", "1 2 0"], ["4 5 6 0"]]
    np.testing.assert_array_equal(CiderD.from_pickle(plain).score(cands, refs),
                                  CiderD.from_pickle(tmp_path / "coco-train-idxs.p").score(cands, refs))


def test_prepro_areas_matches_the_format(toy_dir, tmp_path):
    r = run(["prepro_areas.py", "--input_json", toy_dir / "dataset_coco.json", "--images_root", toy_dir / "images",
             "--input_dir", toy_dir / "cocobu_box", "--output_dir", tmp_path / "vec", "--num_grids", 144])
    assert r.returncode == 0, r.stderr
    files = sorted((toy_dir / "cocobu_box_vec").glob("*.npy"))
    assert len(files) == 120
    for f in files:
        mine = np.load(tmp_path / "vec" / f.name)
        assert mine.dtype == np.float32
        np.testing.assert_allclose(mine, np.load(f), atol=1e-5)


def test_prepro_areas_missing_boxes_is_one_line(toy_dir, tmp_path):
    r = run(["prepro_areas.py", "--input_json", toy_dir / "dataset_coco.json", "--images_root", toy_dir / "images",
             "--input_dir", tmp_path / "nowhere", "--output_dir", tmp_path / "vec"])
    assert r.returncode != 0 and "make_bu_data" in r.stderr and "Traceback" not in r.stderr


def test_make_bu_data_round_trip(toy_dir, tmp_path):
    ids = sorted(int(p.stem) for p in (toy_dir / "cocobu_att").glob("*.npz"))[:6]
    trainval = tmp_path / "bu_data" / "trainval"
    trainval.mkdir(parents=True)
    names = ["karpathy_test_resnet101_faster_rcnn_genome.tsv", "karpathy_val_resnet101_faster_rcnn_genome.tsv",
             "karpathy_train_resnet101_faster_rcnn_genome.tsv.0", "karpathy_train_resnet101_faster_rcnn_genome.tsv.1"]
    for n, name in enumerate(names):
        with open(trainval / name, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            for cid in ids[n::4]:
                feat = np.load(toy_dir / "cocobu_att" / f"{cid}.npz")["feat"]
                box = np.load(toy_dir / "cocobu_box" / f"{cid}.npy")
                w.writerow([cid, 128, 128, len(feat), base64.b64encode(box.tobytes()).decode(),
                            base64.b64encode(feat.tobytes()).decode()])
    r = run(["scripts/make_bu_data.py", "--downloaded_feats", tmp_path / "bu_data", "--output_dir", tmp_path / "cocobu"])
    assert r.returncode == 0, r.stderr
    for cid in ids:
        ref_feat = np.load(toy_dir / "cocobu_att" / f"{cid}.npz")["feat"]
        np.testing.assert_array_equal(np.load(tmp_path / "cocobu_att" / f"{cid}.npz")["feat"], ref_feat)
        np.testing.assert_array_equal(np.load(tmp_path / "cocobu_box" / f"{cid}.npy"),
                                      np.load(toy_dir / "cocobu_box" / f"{cid}.npy"))
        np.testing.assert_allclose(np.load(tmp_path / "cocobu_fc" / f"{cid}.npy"), ref_feat.mean(0), rtol=1e-6)


def test_make_bu_data_missing_tsv_is_one_line(tmp_path):
    r = run(["scripts/make_bu_data.py", "--downloaded_feats", tmp_path, "--output_dir", tmp_path / "cocobu"])
    assert r.returncode != 0 and "trainval.zip" in r.stderr and "Traceback" not in r.stderr


def test_prepro_feats_grid_features(toy_dir, tmp_path):
    sys.path.insert(0, str(SUB))
    from misc.resnet_features import caffe_style_resnet

    torch.manual_seed(0)
    (tmp_path / "w").mkdir()
    torch.save(caffe_style_resnet("resnet18").state_dict(), tmp_path / "w" / "resnet18.pth")
    karpathy = json.loads((toy_dir / "dataset_coco.json").read_text())
    karpathy["images"] = karpathy["images"][:2]
    (tmp_path / "small.json").write_text(json.dumps(karpathy))
    r = run(["scripts/prepro_feats.py", "--input_json", tmp_path / "small.json", "--output_dir", tmp_path / "cocotalk",
             "--images_root", toy_dir / "images", "--model", "resnet18", "--model_root", tmp_path / "w"])
    assert r.returncode == 0, r.stderr
    cid = karpathy["images"][0]["cocoid"]
    att = np.load(tmp_path / "cocotalk_att" / f"{cid}.npz")["feat"]
    fc = np.load(tmp_path / "cocotalk_fc" / f"{cid}.npy")
    assert att.shape == (14, 14, 512) and fc.shape == (512,) and att.dtype == np.float32
    assert fc.min() >= 0 and np.isfinite(att).all()


def test_prepro_feats_without_weights_is_one_line(toy_dir, tmp_path):
    r = run(["scripts/prepro_feats.py", "--input_json", toy_dir / "dataset_coco.json", "--output_dir",
             tmp_path / "x", "--model_root", tmp_path])
    assert r.returncode != 0 and "resnet101.pth not found" in r.stderr and "Traceback" not in r.stderr


def test_prepro_labels_uses_the_given_tokens(tmp_path):
    """Karpathy's dataset_coco.json carries pre-tokenised `tokens`: the vocabulary and labels come from them, never
    from re-tokenising `raw` (whose words here differ: "man's", "Hat!", "skate-board")."""
    sents = [("A man's red Hat!", ["a", "mans", "red", "hat"]), ("The skate-board.", ["the", "skateboard"]),
             ("A man's hat", ["a", "mans", "hat"])]
    images = [{"filepath": "val2014", "filename": f"COCO_val2014_{i:012d}.jpg", "imgid": i, "cocoid": 7 + i,
               "split": split, "sentids": [i],
               "sentences": [{"raw": raw, "tokens": toks, "imgid": i, "sentid": i}]}
              for i, ((raw, toks), split) in enumerate(zip(sents, ("train", "val", "restval")))]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    r = run(["scripts/prepro_labels.py", "--input_json", tmp_path / "dataset_coco.json", "--output_json",
             tmp_path / "talk.json", "--output_h5", tmp_path / "talk", "--word_count_threshold", "1"])
    assert r.returncode == 0, r.stderr
    talk = json.loads((tmp_path / "talk.json").read_text())
    assert talk["ix_to_word"] == {"1": "a", "2": "mans", "3": "hat", "4": "UNK"}  # seen > 1 time, then UNK
    assert [img["id"] for img in talk["images"]] == [7, 8, 9]
    with h5py.File(tmp_path / "talk_label.h5") as f:
        np.testing.assert_array_equal(f["labels"][:, :4], [[1, 2, 4, 3], [4, 4, 0, 0], [1, 2, 3, 0]])
        np.testing.assert_array_equal(f["label_length"][:], [4, 2, 3])
