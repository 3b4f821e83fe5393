"""Each subproject's download_data.sh, run as its Makefile runs it, against a local HTTP server on 127.0.0.1 that
stands in for every host (VLREPRO_MIRROR, tools/fetch.py) and serves tiny fake files in each real format. Per script:
a transfer dropped half-way is resumed with a Range request; a wrong file is set aside as *.bad, named in one stderr
line, never unpacked, and the script fails; once the server serves the right files a rerun completes and puts every
file where the loaders and tools/paper_rows.toml's `requires` expect it; a further rerun downloads nothing.
No internet: the server stops with the test; every script run has a timeout and a bound on its requests."""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tomllib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archives import tar_bytes, zip_bytes

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 120  # seconds per script run; each takes 1-4 s here
MAX_REQUESTS = 20  # GETs per script run: the most any run here makes is 15 (gin's second)


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (120, 30, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def read_shapes(manifest: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in manifest.read_text().splitlines():
        key, shape = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
    return shapes


def fake_checkpoint(manifest: Path | None, wrong_shape: bool = False) -> bytes:
    """A state dict with every key of the manifest at its shape, pickled as Module.state_dict() returns it (an
    OrderedDict with `_metadata`); each tensor is one element expanded, so the file stays small whatever the shapes."""
    shapes = read_shapes(manifest) if manifest else {"conv1.weight": (64, 3, 7, 7), "fc.bias": (1000,)}
    state = OrderedDict((k, torch.zeros(()).expand(shape)) for k, shape in shapes.items())
    state._metadata = OrderedDict({"": {"version": 1}})
    if wrong_shape:
        key = next(k for k, shape in shapes.items() if shape)
        state[key] = torch.zeros(()).expand(shapes[key][0] + 1, *shapes[key][1:])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def requirements(subproject: str, data: Path) -> tuple[list[Path], list[str]]:
    """The files under data/<P> and the Python modules that tools/paper_rows.toml says `make P-data` provides
    (manual steps left out)."""
    rows = tomllib.loads((ROOT / "tools" / "paper_rows.toml").read_text())["rows"]
    needs = [r for row in rows if row["subproject"] == subproject for r in row.get("requires", [])
             if r["how"].startswith(f"make {subproject}-data")]
    assert needs, f"paper_rows.toml names nothing that make {subproject}-data provides"
    paths = sorted({data / r["path"].removeprefix("{data}/") for r in needs if "path" in r})
    return paths, sorted({r["module"] for r in needs if "module" in r})


def script_env(server, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(VLREPRO_MIRROR=server.url, VLREPRO_FETCH_BACKOFF="0", PY=sys.executable, OMP_NUM_THREADS="1",
               no_proxy="127.0.0.1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def run(server, subproject: str, args: list[str], env: dict[str, str]):
    """Run `bash download_data.sh ARGS` in the subproject's folder; returns the process and the GETs it made."""
    before = len(server.requests)
    proc = subprocess.run(["bash", "download_data.sh", *args], cwd=ROOT / subproject, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)
    made = server.requests[before:]
    assert len(made) <= MAX_REQUESTS, made
    return proc, made


def assert_resumed(made: list[tuple[str, str | None]], path: str, served: bytes, out: Path) -> None:
    """The first GET of `path` broke half-way, the next asked for the rest, and `out` is the whole file."""
    ranges = [r for p, r in made if p == path]
    assert ranges[:2] == [None, f"bytes={len(served) // 2}-"], ranges
    assert out.read_bytes() == served


def assert_set_aside(proc, bad: Path, sources: int = 1) -> None:
    """Exit non-zero, the wrong file kept as *.bad, and one stderr line naming it per source that served it."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert bad.exists(), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "set aside as" in line and line.endswith(bad.name)]
    assert len(lines) == sources, proc.stderr
    assert "Traceback" not in proc.stderr


def assert_complete(subproject: str, data: Path, env: dict[str, str]) -> None:
    paths, modules = requirements(subproject, data)
    missing = [p for p in paths if not p.exists()]
    assert not missing, missing
    for module in modules:
        subprocess.run([sys.executable, "-c", f"import {module}"], env=env, check=True, timeout=RUN_TIMEOUT)
    assert not list(data.rglob("*.part")), list(data.rglob("*.part"))


OFFLINE = {"difnet": ["DEST"], "dmn": ["--path", "DEST"], "gin": ["DEST"], "clip4idc": ["DEST", sys.executable],
           "spatial_captioning": ["DEST"]}


@pytest.mark.parametrize("subproject", sorted(OFFLINE))
def test_offline_the_script_says_so_in_one_line(subproject, tmp_path):
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    args = [str(tmp_path / "data") if a == "DEST" else a for a in OFFLINE[subproject]]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(VLREPRO_MIRROR=dead, PY=sys.executable)
    proc = subprocess.run(["bash", "download_data.sh", *args], cwd=ROOT / subproject, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "no internet" in proc.stderr or "offline" in proc.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], list(tmp_path.rglob("*"))


def test_fake_checkpoints_keep_one_element_per_tensor():
    manifest = ROOT / "clip4idc" / "tests" / "fixtures" / "clip4idc.caption.state_dict.tsv"
    state = torch.load(io.BytesIO(fake_checkpoint(manifest)), weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == read_shapes(manifest)
    assert all(v.untyped_storage().nbytes() == 4 for v in state.values())
    assert len(fake_checkpoint(manifest)) < 300_000  # the real file is about 600 MB


def test_difnet(file_server, tmp_path):
    server, data = file_server, tmp_path / "difnet"
    annotations = zip_bytes({"annotations/captions_train2014.json": b"{}" + b" " * 4000})
    server.files["/ailb-web.ing.unimore.it/publicfiles/drive/meshed-memory-transformer/annotations.zip"] = annotations
    server.drop_once.add("/ailb-web.ing.unimore.it/publicfiles/drive/meshed-memory-transformer/annotations.zip")
    other_zip = zip_bytes({"segmentations/readme.txt": b"another archive"})
    server.files["/gdrive/1x6RVn01eZKRtoNfZZh4tUSF57N40YxAW"] = other_zip
    server.files["/gdrive/1R7GL9FTZgc0cpCoJ6UGWNuhvAiDciab7"] = other_zip
    server.files["/gdrive/1aDuiiIJomAvQlS-N7VTsqD45rnOt5Oj2"] = fake_checkpoint(
        ROOT / "difnet" / "tests" / "fixtures" / "difnet.difnet_lrp.state_dict.tsv")
    server.files["/raw.githubusercontent.com/mrwu-mac/DIFNet/5ef4c9a/vocab.pkl"] = pickle.dumps({"itos": ["<pad>"]})
    env = script_env(server)

    proc, made = run(server, "difnet", [str(data)], env)
    assert_resumed(made, "/ailb-web.ing.unimore.it/publicfiles/drive/meshed-memory-transformer/annotations.zip",
                   annotations, data / "annotations.zip")
    assert (data / "m2_annotations" / "captions_train2014.json").exists()
    assert_set_aside(proc, data / "segmentations.zip.bad", sources=2)  # both Drive ids serve it
    assert not (data / "segmentations").exists()

    # the older Drive id still serves the other archive: the newer one is tried next
    server.files["/gdrive/1R7GL9FTZgc0cpCoJ6UGWNuhvAiDciab7"] = zip_bytes({"segmentations/val2014/1.npy": b"\0" * 64})
    proc, made = run(server, "difnet", [str(data)], env)
    assert proc.returncode == 2 and "pan.baidu.com" in proc.stderr.splitlines()[-1], proc.stderr
    assert (data / "segmentations" / "val2014" / "1.npy").exists()

    import h5py  # the manual step done: the grid features saved where the script said

    with h5py.File(data / "coco_grid_feats2.hdf5", "w") as f:
        f["1_grids"] = np.zeros((49, 8), dtype=np.float32)
    proc, made = run(server, "difnet", [str(data)], env)
    assert proc.returncode == 0 and "complete" in proc.stdout, proc.stderr
    assert made == []
    assert_complete("difnet", data, env)


def test_dmn(file_server, tmp_path):
    server, data = file_server, tmp_path / "dmn"
    referit = tar_bytes({"images/8756.jpg": jpeg_bytes(), "mask/8756_1.mat": b"\0" * 3000})
    referit_url = "/www.eecs.berkeley.edu/~ronghang/projects/cvpr16_text_obj_retrieval/referitdata.tar.gz"
    server.files[referit_url] = referit
    server.drop_once.add(referit_url)
    server.files["/s3-sa-east-1.amazonaws.com/query-objseg/referit_splits.tar.bz2"] = tar_bytes(
        {"vocabulary_Gref.txt": b"<pad>\n", "vocabulary_referit.txt": b"<pad>\n",
         "referit/referit_query_test.json": b"{}"}, "w:bz2")
    coco = zip_bytes({"train2014/COCO_train2014_000000000009.jpg": jpeg_bytes()})
    server.files["/images.cocodataset.org/zips/train2014.zip"] = coco
    for name in ("refcoco", "refcoco+", "refcocog"):
        server.files[f"/bvisionweb1.cs.unc.edu/licheng/referit/data/{name}.zip"] = zip_bytes(
            {f"{name}/instances.json": b"{}", f"{name}/refs(unc).p": pickle.dumps([])})
    server.files["/data.lip6.fr/cadene/pretrainedmodels/dpn92_extra-b040e4a9b.pth"] = fake_checkpoint(None)
    weights = fake_checkpoint(ROOT / "dmn" / "tests" / "fixtures" / "dmn.highres.state_dict.tsv")
    for name in ("referit", "unc", "unc%2B", "gref"):
        server.files[f"/marr.uniandes.edu.co/weights/dmn/highres/dmn_{name}_weights.pth"] = weights
    args = ["--path", str(data)]

    proc, made = run(server, "dmn", args, script_env(server))  # the fake COCO zip has not the published MD5
    assert_resumed(made, referit_url, referit, data / "downloads" / "referitdata.tar.gz")
    assert (data / "referit" / "images" / "8756.jpg").exists()
    assert_set_aside(proc, data / "downloads" / "train2014.zip.bad")
    assert "checksum differs" in proc.stderr
    assert not (data / "other" / "images" / "mscoco" / "images" / "train2014").exists()

    env = script_env(server, COCO_TRAIN2014_MD5=hashlib.md5(coco).hexdigest())
    proc, made = run(server, "dmn", args, env)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr
    assert_complete("dmn", data, env)

    proc, made = run(server, "dmn", args, env)
    assert proc.returncode == 0 and made == [], (proc.stderr, made)


def test_gin(file_server, tmp_path):
    server, data, site = file_server, tmp_path / "gin", tmp_path / "site"
    resnet = fake_checkpoint(None)
    server.files["/download.pytorch.org/models/resnet50-19c8e357.pth"] = resnet
    csv = b'img_id,bbox,query\n1.jpg,"[0, 0, 4, 4]","[\'a dog\', \'the dog\']"\n'
    csvs = zip_bytes({"ds_csv_ann/referit/csv_dir/train.csv": csv, "ds_csv_ann/referit/csv_dir/val.csv": csv,
                      "ds_csv_ann/referit/csv_dir/test.csv": csv,
                      "ds_csv_ann/flickr30k/csv_dir/flickr/train.csv": csv,
                      "ds_csv_ann/flickr30k/csv_dir/flickr/val.csv": csv,
                      "ds_csv_ann/flickr30k/csv_dir/flickr/test.csv": csv})
    server.files["/gdrive/1oZ5llnA4btD9LSmnSB0GaZtTogskLwCe"] = csvs
    server.drop_once.add("/gdrive/1oZ5llnA4btD9LSmnSB0GaZtTogskLwCe")
    server.files["/bvisionweb1.cs.unc.edu/licheng/referit/data/images/saiapr_tc-12.zip"] = zip_bytes(
        {"saiapr_tc-12/00/images/25.jpg": jpeg_bytes()})
    spacy_minor = ".".join(importlib.metadata.version("spacy").split(".")[:2])
    server.files["/raw.githubusercontent.com/explosion/spacy-models/master/compatibility.json"] = json.dumps(
        {"spacy": {spacy_minor: {"en_core_web_md": ["9.9.9"]}}}).encode()
    server.files["/github.com/explosion/spacy-models/releases/download/en_core_web_md-9.9.9/"
                 "en_core_web_md-9.9.9-py3-none-any.whl"] = fake_wheel("en_core_web_md", "9.9.9")
    releases = {"zsgnet": ["s!AmrFUyZ_lDVGf68FpDXLIlzvlzY?e=jiQ8CH", "s!AmrFUyZ_lDVGgQCAeaYj4-Kt_OXX?e=V2bJJt"],
                "gin": ["s!AmrFUyZ_lDVGgQL6t2Cp4UvmzPiu?e=PIltdE", "s!AmrFUyZ_lDVGgQErMsd5oJx-S9x-?e=dnjqMK"]}
    for model, shares in releases.items():
        for share in shares:
            server.files[onedrive_path(share)] = fake_checkpoint(ROOT / "gin" / "tests" / "data" /
                                                                  f"{model}.state_dict.tsv")
    gin_referit = onedrive_path(releases["gin"][1])
    server.files[gin_referit] = fake_checkpoint(ROOT / "gin" / "tests" / "data" / "gin.state_dict.tsv", True)
    for share in ("s!AmrFUyZ_lDVGfbdSDe1auqCob_g?e=nR9TwQ", "s!AmrFUyZ_lDVGfEjmz6IXI1q1rRc?e=jIi8kH",
                  "s!AmrFUyZ_lDVGe-XCz_Gh36JcxL4?e=NNjVkh", "s!AmrFUyZ_lDVGegJXY6YO8rowCMI?e=F5Oeu1",
                  "s!AmrFUyZ_lDVGfirzOmAE0CA00uo?e=1v2I6F"):
        server.files[onedrive_path(share)] = zip_bytes({"annotations.json": b"[]"})
    env = script_env(server, PIP_TARGET=str(site), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
                     PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))

    proc, made = run(server, "gin", [str(data)], env)  # the fake ResNet has not torchvision's digest
    assert_set_aside(proc, data / "weights" / "resnet50-19c8e357.pth.bad")
    assert "checksum differs" in proc.stderr

    env["RESNET50_SHA256_PREFIX"] = hashlib.sha256(resnet).hexdigest()[:8]
    proc, made = run(server, "gin", [str(data)], env)
    assert_resumed(made, "/gdrive/1oZ5llnA4btD9LSmnSB0GaZtTogskLwCe", csvs, data / "ds_csv_ann.zip")
    assert_set_aside(proc, data / "weights" / "gin_referit.pth.bad")
    assert "1 of another shape" in proc.stderr and "AmrFUyZ_lDVGgQErMsd5oJx-S9x-" in proc.stderr
    assert (site / "en_core_web_md" / "__init__.py").exists()  # pip-installed from the fetched wheel

    server.files[gin_referit] = fake_checkpoint(ROOT / "gin" / "tests" / "data" / "gin.state_dict.tsv")
    proc, made = run(server, "gin", [str(data)], env)
    assert proc.returncode == 0 and "Flickr30k images" in proc.stdout, proc.stderr
    assert [p for p, _ in made] == [gin_referit]
    assert_complete("gin", data, env)
    assert (data / "referit" / "saiapr_tc12_images" / "25.jpg").exists()
    assert (data / "gin_datasets" / "vg" / "annotations.json").exists()

    proc, made = run(server, "gin", [str(data)], env)
    assert proc.returncode == 0 and made == [], (proc.stderr, made)


def onedrive_path(share: str) -> str:
    token = base64.urlsafe_b64encode(f"https://1drv.ms/u/{share}".encode()).decode().rstrip("=")
    return f"/api.onedrive.com/v1.0/shares/u!{token}/root/content"


def fake_wheel(name: str, version: str) -> bytes:
    files = {f"{name}/__init__.py": b"",
             f"{name}-{version}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip('=')},"
                     f"{len(data)}\n" for path, data in files.items())
    files[f"{name}-{version}.dist-info/RECORD"] = (record + f"{name}-{version}.dist-info/RECORD,,\n").encode()
    return zip_bytes(files)


def test_clip4idc(file_server, tmp_path):
    server, data = file_server, tmp_path / "clip4idc"
    clip = zip_bytes({"ViT-B-32/data.pkl": b"\x80\x02}q\x00."})
    server.files["/openaipublic.azureedge.net/clip/models/"
                 "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"] = clip
    captions = json.dumps({"CLEVR_default_000001.png": ["the cube moved"]}).encode()
    clevr = tar_bytes({"data/splits.json": b'{"train": [0], "val": [], "test": []}',
                       "data/change_captions.json": captions, "data/no_change_captions.json": captions,
                       "data/images/CLEVR_default_000001.png": b"png",
                       "data/sc_images/CLEVR_semantic_000001.png": b"png",
                       "data/nsc_images/CLEVR_nonsemantic_000001.png": b"png", "data/padding.bin": os.urandom(8000)})
    server.files["/gdrive/1HJ3gWjaUJykEckyb2M0MB4HnrJSihjVe"] = clevr
    server.drop_once.add("/gdrive/1HJ3gWjaUJykEckyb2M0MB4HnrJSihjVe")
    server.files["/gdrive/1OVb4_3Uec_xbyUk90aWC6LFpKsIOtR7v"] = zip_bytes(
        {"resized_images/1.png": b"png", "resized_images/1_2.png": b"png"})
    raw = json.dumps([{"img_id": "1", "sentences": ["a car is gone"]}]).encode()
    for split in ("train", "val", "test"):
        server.files[f"/raw.githubusercontent.com/harsh19/spot-the-diff/master/data/annotations/{split}.json"] = raw
    folders = {"1g8QD6Y3La8cIamE7jeSSlXTw8G3r5Q8o": {"reformat_test.json": raw},  # fails reformat --check: rebuilt
               "1qOYVpZy57clJPF6AThsnO0Tfy4zq-gg1": {"pytorch_model.bin.clevr": "retrieval"},
               "18UfIvwKt0EE14EbogJycMmANpUJtsZbE": {"pytorch_model.bin.clevr": "caption",
                                                     "pytorch_model.bin.spot": "caption", "log.txt": b"not fetched"}}
    for folder, files in folders.items():
        server.files[f"/gdrive-folder/{folder}"] = json.dumps(
            [{"id": f"{folder}-{i}", "path": path} for i, path in enumerate(files)]).encode()
        for i, content in enumerate(files.values()):
            server.files[f"/gdrive/{folder}-{i}"] = content if isinstance(content, bytes) else fake_checkpoint(
                ROOT / "clip4idc" / "tests" / "fixtures" / f"clip4idc.{content}.state_dict.tsv")
    spot_checkpoint = "/gdrive/18UfIvwKt0EE14EbogJycMmANpUJtsZbE-1"
    server.files[spot_checkpoint] = fake_checkpoint(
        ROOT / "clip4idc" / "tests" / "fixtures" / "clip4idc.caption.state_dict.tsv", wrong_shape=True)
    args = [str(data), sys.executable]
    env = script_env(server, CLIP_SHA256=hashlib.sha256(clip).hexdigest())

    proc, made = run(server, "clip4idc", args, env)
    assert_resumed(made, "/gdrive/1HJ3gWjaUJykEckyb2M0MB4HnrJSihjVe", clevr, data / "clevr_change.tar.gz")
    assert (data / "clevr_change" / "data" / "splits.json").exists()
    assert_set_aside(proc, data / "ckpts" / "trained" / "pytorch_model.bin.spot.bad")
    assert "drive/folders/18UfIvwKt0EE14EbogJycMmANpUJtsZbE" in proc.stderr.splitlines()[-1]
    assert not (data / "ckpts" / "trained" / "log.txt").exists()

    server.files[spot_checkpoint] = fake_checkpoint(
        ROOT / "clip4idc" / "tests" / "fixtures" / "clip4idc.caption.state_dict.tsv")
    proc, made = run(server, "clip4idc", args, env)
    assert proc.returncode == 0, proc.stderr
    assert [p for p, _ in made] == [spot_checkpoint]
    assert_complete("clip4idc", data, env)
    assert json.loads((data / "spot-the-diff" / "reformat_test.json").read_text()) == json.loads(raw)

    proc, made = run(server, "clip4idc", args, env)
    assert proc.returncode == 0 and made == [], (proc.stderr, made)


def bu_tsv(image_id: int) -> bytes:
    boxes = base64.b64encode(np.array([[0, 0, 4, 3]], dtype=np.float32).tobytes()).decode()
    feats = base64.b64encode(np.ones((1, 2048), dtype=np.float32).tobytes()).decode()
    return f"{image_id}\t8\t6\t1\t{boxes}\t{feats}\n".encode()


def test_spatial_captioning(file_server, tmp_path):
    server, data = file_server, tmp_path / "spatial_captioning"
    sentence = {"tokens": ["a", "dog"], "raw": "a dog"}
    dataset = {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000000001.jpg", "cocoid": 1, "split": "test",
         "sentences": [sentence]},
        {"filepath": "train2014", "filename": "COCO_train2014_000000000002.jpg", "cocoid": 2, "split": "train",
         "sentences": [sentence]}]}
    karpathy = "/cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
    server.files[karpathy] = zip_bytes({"dataset_flickr8k.json": b"{}"})
    server.files["/images.cocodataset.org/annotations/annotations_trainval2014.zip"] = zip_bytes(
        {"annotations/captions_val2014.json": b'{"images": [], "annotations": []}'})
    server.files["/images.cocodataset.org/zips/train2014.zip"] = zip_bytes(
        {"train2014/COCO_train2014_000000000002.jpg": jpeg_bytes()})
    val = zip_bytes({"val2014/COCO_val2014_000000000001.jpg": jpeg_bytes(), "val2014/padding": os.urandom(6000)})
    server.files["/images.cocodataset.org/zips/val2014.zip"] = val
    server.drop_once.add("/images.cocodataset.org/zips/val2014.zip")
    server.files["/imagecaption.blob.core.windows.net/imagecaption/trainval.zip"] = zip_bytes(
        {"trainval/karpathy_test_resnet101_faster_rcnn_genome.tsv": bu_tsv(1),
         "trainval/karpathy_val_resnet101_faster_rcnn_genome.tsv": b"",
         "trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.0": bu_tsv(2),
         "trainval/karpathy_train_resnet101_faster_rcnn_genome.tsv.1": b""})
    server.files["/gdrive-folder/0B7fNdx_jAqhtbVYzOURMdDNHSGM"] = json.dumps(
        [{"id": "resnet101", "path": "resnet101.pth"}]).encode()
    server.files["/gdrive/resnet101"] = fake_checkpoint(None)
    fixed_image = jpeg_bytes()
    server.files["/msvocds.blob.core.windows.net/images/262993_z.jpg"] = fixed_image
    env = script_env(server)

    proc, made = run(server, "spatial_captioning", [str(data)], env)  # a zip of the other data sets' json files
    assert_set_aside(proc, data / "caption_datasets.zip.bad")
    assert not (data / "dataset_coco.json").exists()

    server.files[karpathy] = zip_bytes({"dataset_coco.json": json.dumps(dataset).encode()})
    proc, made = run(server, "spatial_captioning", [str(data)], env)
    assert proc.returncode == 0, proc.stderr
    assert_resumed(made, "/images.cocodataset.org/zips/val2014.zip", val, data / "val2014.zip")
    assert (data / "images" / "train2014" / "COCO_train2014_000000167126.jpg").read_bytes() == fixed_image
    assert_complete("spatial_captioning", data, env)
    assert np.load(data / "cocobu_box_vec" / "1.npy").shape == (1, 144)
    assert (data / "imagenet_weights" / "resnet101.pth").exists()

    proc, made = run(server, "spatial_captioning", [str(data)], env)
    assert proc.returncode == 0 and made == [], (proc.stderr, made)
