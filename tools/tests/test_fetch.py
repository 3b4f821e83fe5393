"""tools/fetch.py against a local HTTP server on 127.0.0.1: resume after a dropped transfer, OneDrive share links,
structural checks that set a wrong file aside. No internet; the server stops with the test."""

import base64
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

TOOLS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOOLS))

import fetch  # noqa: E402
from archives import tar_bytes, zip_bytes  # noqa: E402

SHARE_URL = "https://1drv.ms/u/s!AmrFUyZ_lDVGgQErMsd5oJx-S9x-?e=dnjqMK"


@pytest.fixture
def server(file_server, monkeypatch):
    monkeypatch.setattr(fetch, "ONEDRIVE_API", f"{file_server.url}/v1.0")
    monkeypatch.setenv("VLREPRO_FETCH_BACKOFF", "0")
    monkeypatch.delenv("VLREPRO_MIRROR", raising=False)
    return file_server


def test_onedrive_share_url_is_encoded_as_the_api_documents():
    token = base64.urlsafe_b64encode(SHARE_URL.encode()).decode().rstrip("=")
    assert fetch.onedrive_content_url(SHARE_URL).endswith(f"/shares/u!{token}/root/content")
    assert "=" not in token and "/" not in token and "+" not in token


def test_dropped_transfer_resumes_with_a_range_request(server, tmp_path):
    payload = zip_bytes({"segmentations/val2014/1.npy": np.arange(50_000).tobytes()})
    server.files["/seg.zip"] = payload
    server.drop_once.add("/seg.zip")
    out = tmp_path / "seg.zip"
    assert fetch.fetch(out, [f"{server.url}/seg.zip"], size=len(payload), structure="zip:segmentations/val2014")
    assert out.read_bytes() == payload
    ranges = [r for p, r in server.requests if p == "/seg.zip"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(payload) // 2}-"
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob("*.bad"))


def test_interrupted_run_resumes_on_the_next_run(server, tmp_path, monkeypatch):
    payload = bytes(range(256)) * 400
    server.files["/w.bin"] = payload
    server.drop_once.add("/w.bin")
    monkeypatch.setattr(fetch, "ATTEMPTS", 1)  # the first run gives up after the dropped transfer
    out = tmp_path / "w.bin"
    assert not fetch.fetch(out, [f"{server.url}/w.bin"])
    part = fetch.partial_path(out, f"{server.url}/w.bin")
    assert part.stat().st_size == len(payload) // 2
    assert fetch.fetch(out, [f"{server.url}/w.bin"], digest=hashlib.sha256(payload).hexdigest())
    assert out.read_bytes() == payload
    assert server.requests[-1] == ("/w.bin", f"bytes={len(payload) // 2}-")


def test_onedrive_source_follows_the_share_api(server, tmp_path):
    token = base64.urlsafe_b64encode(SHARE_URL.encode()).decode().rstrip("=")
    server.files[f"/content/u!{token}"] = b"checkpoint bytes"
    out = tmp_path / "gin.pth"
    assert fetch.fetch(out, [f"onedrive:{SHARE_URL}"])
    assert out.read_bytes() == b"checkpoint bytes"


def test_wrong_file_is_set_aside_and_the_next_source_used(server, tmp_path):
    good = zip_bytes({"annotations/captions_train2014.json": b"{}"})
    server.files["/html"] = b"<html>Google Drive - quota exceeded</html>"
    server.files["/good.zip"] = good
    out = tmp_path / "annotations.zip"
    assert fetch.fetch(out, [f"{server.url}/html", f"{server.url}/good.zip"], structure="zip:annotations")
    assert out.read_bytes() == good
    assert (tmp_path / "annotations.zip.bad").read_bytes().startswith(b"<html>")


def test_zip_without_the_expected_member_is_refused(server, tmp_path):
    server.files["/other.zip"] = zip_bytes({"readme.txt": b"another archive"})
    out = tmp_path / "segmentations.zip"
    assert not fetch.fetch(out, [f"{server.url}/other.zip"], structure="zip:segmentations")
    assert not out.exists() and (tmp_path / "segmentations.zip.bad").exists()


def test_checkpoint_checked_against_a_manifest(server, tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("encoder.weight\t4x3\nbn.num_batches_tracked\tscalar\n")
    right = io.BytesIO()
    torch.save({"module.encoder.weight": torch.zeros(4, 3), "module.bn.num_batches_tracked": torch.tensor(0)}, right)
    wrong = io.BytesIO()
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}}, wrong)
    server.files["/right.pth"], server.files["/wrong.pth"] = right.getvalue(), wrong.getvalue()
    out = tmp_path / "model.pth"
    assert not fetch.fetch(out, [f"{server.url}/wrong.pth"], structure=f"torch:{manifest}")
    assert not out.exists() and (tmp_path / "model.pth.bad").exists()
    assert fetch.fetch(out, [f"{server.url}/right.pth"], structure=f"torch:{manifest}")
    legacy = io.BytesIO()  # PyTorch <= 0.4.0: no num_batches_tracked
    torch.save({"encoder.weight": torch.zeros(4, 3)}, legacy)
    server.files["/legacy.pth"] = legacy.getvalue()
    assert fetch.fetch(tmp_path / "legacy.pth", [f"{server.url}/legacy.pth"], structure=f"torch:{manifest}")


def test_hdf5_keys_and_an_existing_good_file_is_kept(server, tmp_path):
    feats = tmp_path / "served.hdf5"
    with h5py.File(feats, "w") as f:
        f["1_grids"] = np.zeros((49, 8), dtype=np.float32)
    server.files["/feats.hdf5"] = feats.read_bytes()
    out = tmp_path / "coco_grid_feats2.hdf5"
    assert not fetch.fetch(out, [f"{server.url}/feats.hdf5"], structure="hdf5:2_grids")
    assert fetch.fetch(out, [f"{server.url}/feats.hdf5"], structure="hdf5:1_grids")
    served = len(server.requests)
    assert fetch.fetch(out, [f"{server.url}/feats.hdf5"], structure="hdf5:1_grids")
    assert len(server.requests) == served  # verified in place, not fetched again


def test_cli_exit_codes_and_one_line(server, tmp_path):
    server.files["/trunc.zip"] = zip_bytes({"a": b"x" * 1000})[:-40]
    cmd = [sys.executable, str(TOOLS / "fetch.py"), "--out", str(tmp_path / "a.zip"), "--check", "zip",
           f"{server.url}/trunc.zip"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("fetch: no source gave a good")
    assert (tmp_path / "a.zip.bad").exists()


def test_tar_members_checksums_and_keys_only(server, tmp_path):
    archive = tar_bytes({"splits/vocabulary_Gref.txt": b"vocabulary" * 100})
    server.files["/splits.tar.gz"], server.files["/cut.tar.gz"] = archive, archive[: len(archive) // 2]
    assert not fetch.fetch(tmp_path / "a.tar.gz", [f"{server.url}/cut.tar.gz"], structure="tar:splits")
    assert not fetch.fetch(tmp_path / "b.tar.gz", [f"{server.url}/splits.tar.gz"], digest="0" * 32)
    assert fetch.fetch(tmp_path / "b.tar.gz", [f"{server.url}/splits.tar.gz"], digest=hashlib.md5(archive).hexdigest(),
                       structure="tar:splits/vocabulary_Gref.txt")
    manifest = tmp_path / "m.tsv"
    manifest.write_text("embedding.weight\t12099x1000\n")
    other_vocab = io.BytesIO()
    torch.save({"embedding.weight": torch.zeros(5, 3)}, other_vocab)
    server.files["/dmn.pth"] = other_vocab.getvalue()
    assert not fetch.fetch(tmp_path / "x.pth", [f"{server.url}/dmn.pth"], structure=f"torch:{manifest}")
    assert fetch.fetch(tmp_path / "y.pth", [f"{server.url}/dmn.pth"], structure=f"torchkeys:{manifest}")


def test_cli_checks_a_file_another_tool_downloaded(tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("w\t2x2\n")
    torch.save({"w": torch.zeros(2, 2)}, tmp_path / "good.bin")
    torch.save({"w": torch.zeros(3, 2)}, tmp_path / "bad.bin")
    check = ["--check", f"torch:{manifest}"]
    good = subprocess.run([sys.executable, str(TOOLS / "fetch.py"), "--out", str(tmp_path / "good.bin"), *check],
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and "verified" in good.stdout
    bad = subprocess.run([sys.executable, str(TOOLS / "fetch.py"), "--out", str(tmp_path / "bad.bin"), *check],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "1 of another shape" in bad.stderr and (tmp_path / "bad.bin.bad").exists()


def test_mirror_maps_every_kind_of_source(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VLREPRO_MIRROR", server.url)
    monkeypatch.setattr(fetch, "ONEDRIVE_API", "https://api.onedrive.com/v1.0")
    token = base64.urlsafe_b64encode(SHARE_URL.encode()).decode().rstrip("=")
    server.files.update({"/example.org/a/b.bin": b"plain", "/gdrive/FILEID": b"drive",
                         f"/api.onedrive.com/v1.0/shares/u!{token}/root/content": b"onedrive"})
    assert fetch.fetch(tmp_path / "a", ["https://example.org/a/b.bin"])
    assert fetch.fetch(tmp_path / "b", ["http://example.org/a/b.bin"])
    assert fetch.fetch(tmp_path / "c", ["gdrive:FILEID"])
    assert fetch.fetch(tmp_path / "d", [f"onedrive:{SHARE_URL}"])
    assert [(tmp_path / n).read_bytes() for n in "abcd"] == [b"plain", b"plain", b"drive", b"onedrive"]
    monkeypatch.delenv("VLREPRO_MIRROR")
    assert fetch.mirrored("https://example.org/a/b.bin") == "https://example.org/a/b.bin"


def test_probe_answers_by_exit_status(server, monkeypatch):
    monkeypatch.setenv("VLREPRO_MIRROR", server.url)
    assert fetch.main(["--probe", "https://drive.google.com"]) == 0
    assert server.heads == ["/drive.google.com"]
    monkeypatch.setenv("VLREPRO_MIRROR", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert fetch.main(["--probe", "https://drive.google.com"]) == 1


def test_drive_folder_fetches_the_matching_files_each_checked_and_keeps_its_listing(server, tmp_path, monkeypatch):
    monkeypatch.setenv("VLREPRO_MIRROR", server.url)
    manifest = tmp_path / "m.tsv"
    manifest.write_text("w\t2x2\n")
    right, wrong = io.BytesIO(), io.BytesIO()
    torch.save({"w": torch.zeros(2, 2)}, right)
    torch.save({"w": torch.zeros(3, 2)}, wrong)
    server.files["/gdrive-folder/FOLDER"] = (b'[{"id": "1", "path": "pytorch_model.bin.clevr"}, '
                                             b'{"id": "2", "path": "sub/pytorch_model.bin.spot"}, '
                                             b'{"id": "3", "path": "log.txt"}]')
    server.files.update({"/gdrive/1": right.getvalue(), "/gdrive/2": wrong.getvalue(), "/gdrive/3": b"log"})
    out = tmp_path / "ckpts"
    args = ["--out", str(out), "--only", "*pytorch_model.bin*", "--check", f"torch:{manifest}", "gdrive-folder:FOLDER"]
    assert fetch.main(args) == 1
    assert (out / "pytorch_model.bin.clevr").exists() and (out / "sub" / "pytorch_model.bin.spot.bad").exists()
    assert not (out / "log.txt").exists()
    server.files["/gdrive/2"] = right.getvalue()
    assert fetch.main(args) == 0
    assert ("/gdrive/1", None) not in server.requests[-2:] and server.requests[-1] == ("/gdrive/2", None)
    assert sum(p == "/gdrive-folder/FOLDER" for p, _ in server.requests) == 1  # the listing is kept
    server.files["/gdrive-folder/ESCAPE"] = b'[{"id": "1", "path": "../outside.bin"}]'
    assert fetch.main(["--out", str(tmp_path / "x"), "gdrive-folder:ESCAPE"]) == 1
    assert not (tmp_path / "outside.bin").exists()


def test_legacy_checkpoints_are_read_and_their_storages_counted(tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("w\t1000x2000\nbn.num_batches_tracked\tscalar\n")
    path = tmp_path / "legacy.pth"
    state = {"w": torch.nn.Parameter(torch.ones(1000, 2000)), "bn.num_batches_tracked": torch.tensor(3)}
    torch.save({"state_dict": state, "epoch": 4}, path, _use_new_zipfile_serialization=False)  # PyTorch < 1.6
    fetch.check_torch(path, [str(manifest)])
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(fetch.BadFile, match="its storages need"):
        fetch.check_torch(path, [str(manifest)])


def test_a_checkpoint_check_runs_none_of_the_files_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": Payload()}, path)
    fetch.check_torch(path, [])
    assert not (tmp_path / "ran").exists()


def test_digest_prefix_json_and_pattern_members(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"spacy": {}}')
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    fetch.verify(path, None, digest[:8], "json:spacy")
    with pytest.raises(fetch.BadFile, match="checksum"):
        fetch.verify(path, None, "0" * 8, None)
    with pytest.raises(fetch.BadFile, match="JSON lacks models"):
        fetch.verify(path, None, None, "json:models")
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"resized_images/1_2.png": b"png"}))
    fetch.verify(archive, None, None, "zip:*/1_2.png")
    with pytest.raises(fetch.BadFile, match="zip lacks"):
        fetch.verify(archive, None, None, "zip:*/2_2.png")


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_module_state_dict_with_its_metadata_is_read(tmp_path, zip_format):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("weight\t3\nbias\t3\nrunning_mean\t3\nrunning_var\t3\nnum_batches_tracked\tscalar\n")
    path = tmp_path / "bn.pth"
    torch.save(torch.nn.BatchNorm1d(3).state_dict(), path, _use_new_zipfile_serialization=zip_format)
    fetch.check_torch(path, [str(manifest)])  # state_dict() is an OrderedDict pickled with its _metadata
