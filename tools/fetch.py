"""Resumable, verified download of one file, for the subprojects' `download_data.sh` scripts.

    python tools/fetch.py --out data/gin/ckpt.pth [--size N] [--digest H] [--check torch:MANIFEST.tsv] SOURCE...

SOURCE is tried in turn until one gives a file that passes every check:
  https://... / http://...  a plain URL, resumed with HTTP Range requests from a partial file beside OUT;
  onedrive:SHARE_URL        a OneDrive share link (1drv.ms/...), fetched through OneDrive's public shares API;
  gdrive:FILE_ID            a Google Drive file, through gdown (resumes its own partial file).
Checks after each download: `--size` and `--digest` when given, then the file's structure (`--check`):
  zip[:member,...]          a readable zip archive holding those members (every member's CRC is checked);
  tar[:member,...]          a readable (compressed) tar archive holding those members (read to the end);
  hdf5[:key,...]            an HDF5 file holding those datasets or groups;
  torch[:MANIFEST.tsv]      a torch checkpoint whose state dict holds every `key<TAB>shape` line of the manifest
                            (a `module.` prefix and a wrapping `state_dict`/`model` entry are allowed);
  torchkeys[:MANIFEST.tsv]  the same for the keys only (where the vocabulary size changes a shape per data set).
A file that fails is moved aside to `OUT.bad` (named in the message) and never used; a file already at OUT that passes
is kept. With no SOURCE, only the file already at OUT is checked (for files another tool downloaded).
Exit 0 on success, 1 when no source gave a good file (one line on stderr says why).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

ONEDRIVE_API = os.environ.get("VLREPRO_ONEDRIVE_API", "https://api.onedrive.com/v1.0")
CHUNK = 1 << 20
ATTEMPTS = 4  # per source: a dropped connection resumes from where it stopped


class BadFile(Exception):
    """The downloaded file is not what was asked for."""


def onedrive_content_url(share_url: str) -> str:
    """OneDrive's direct-content URL of a share link: `u!` + the link in unpadded base64url."""
    token = base64.urlsafe_b64encode(share_url.encode()).decode().rstrip("=")
    return f"{ONEDRIVE_API}/shares/u!{token}/root/content"


def http_download(url: str, part: Path, timeout: float = 60.0) -> None:
    """Download `url` into `part`, continuing a partial file; raises OSError when the transfer breaks."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "vlrepro-fetch/1"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the part file already holds everything
            return
        raise
    with response:
        if start and response.status != 206:  # the server ignored the range: start over
            start = 0
        expected = response.headers.get("Content-Length")
        expected_total = start + int(expected) if expected is not None else None
        with part.open("ab" if start else "wb") as f:
            try:
                shutil.copyfileobj(response, f, CHUNK)
            except http.client.HTTPException as e:  # IncompleteRead: the server closed the connection early
                raise OSError(f"connection dropped ({type(e).__name__})") from None
    if expected_total is not None and part.stat().st_size != expected_total:
        raise OSError(f"transfer stopped at {part.stat().st_size} of {expected_total} bytes")


def gdrive_download(file_id: str, part: Path) -> None:
    import gdown

    if gdown.download(id=file_id, output=str(part), quiet=False, resume=True) is None:
        raise OSError(f"Google Drive refused file id {file_id} (quota, permission or a removed file)")


def download(source: str, part: Path) -> None:
    if source.startswith("gdrive:"):
        gdrive_download(source.removeprefix("gdrive:"), part)
        return
    url = onedrive_content_url(source.removeprefix("onedrive:")) if source.startswith("onedrive:") else source
    for attempt in range(1, ATTEMPTS + 1):
        try:
            http_download(url, part)
            return
        except (OSError, urllib.error.URLError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code < 500:
                raise
            if attempt == ATTEMPTS:
                raise
            print(f"fetch: {e}; resuming ({attempt}/{ATTEMPTS - 1})", file=sys.stderr)
            time.sleep(min(2 ** attempt, 10) * float(os.environ.get("VLREPRO_FETCH_BACKOFF", "1")))


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_members(names: set[str], members: list[str]) -> list[str]:
    """The members (files, or folders given by their path) that an archive listing lacks."""
    return [m for m in members if m not in names and not any(n.startswith(m.rstrip("/") + "/") for n in names)]


def check_zip(path: Path, members: list[str]) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            broken = z.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        raise BadFile(f"not a readable zip archive ({e})") from None
    if broken is not None:
        raise BadFile(f"zip member {broken} is corrupt")
    missing = missing_members(names, members)
    if missing:
        raise BadFile(f"zip lacks {', '.join(missing)}")


def check_tar(path: Path, members: list[str]) -> None:
    try:
        with tarfile.open(path) as t:
            names = set(t.getnames())
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BadFile(f"not a readable tar archive ({e})") from None
    missing = missing_members(names, members)
    if missing:
        raise BadFile(f"tar archive lacks {', '.join(missing)}")


def check_hdf5(path: Path, keys: list[str]) -> None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if k not in f]
    except OSError as e:
        raise BadFile(f"not a readable HDF5 file ({e})") from None
    if missing:
        raise BadFile(f"HDF5 file lacks {', '.join(missing)}")


def read_manifest(manifest: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in manifest.read_text().splitlines():
        key, shape = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
    return shapes


def state_dict_of(checkpoint) -> dict:
    for wrapper in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
    if not isinstance(checkpoint, dict):
        raise BadFile(f"holds a {type(checkpoint).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def check_torch(path: Path, manifests: list[str], shapes: bool = True) -> None:
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise BadFile(f"not a readable torch checkpoint ({str(e).splitlines()[0]})") from None
    state = state_dict_of(checkpoint)
    for manifest in manifests:
        expected = read_manifest(Path(manifest))
        # PyTorch <= 0.4.0 wrote no BatchNorm num_batches_tracked; load_state_dict accepts such files.
        missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
        wrong = [k for k in expected if shapes and k in state and tuple(state[k].shape) != expected[k]]
        if missing or wrong:
            example = (missing or wrong)[0]
            raise BadFile(f"state dict differs from {Path(manifest).name}: {len(missing)} keys missing, "
                          f"{len(wrong)} of another shape (e.g. {example})")


CHECKS: dict[str, Callable[[Path, list[str]], None]] = {
    "zip": check_zip, "tar": check_tar, "hdf5": check_hdf5, "torch": check_torch,
    "torchkeys": lambda path, manifests: check_torch(path, manifests, shapes=False),
}


def verify(path: Path, size: int | None, digest: str | None, structure: str | None) -> None:
    """`digest` is a SHA-256 (64 hex digits) or, where that is all a data set publishes, an MD5 (32)."""
    if size is not None and path.stat().st_size != size:
        raise BadFile(f"{path.stat().st_size} bytes, expected {size}")
    if digest is not None and file_digest(path, "md5" if len(digest) == 32 else "sha256") != digest.lower():
        raise BadFile("checksum differs from the published one")
    if structure:
        kind, _, args = structure.partition(":")
        CHECKS[kind](path, [a for a in args.split(",") if a])


def set_aside(path: Path, out: Path, reason: str) -> None:
    bad = out.with_name(out.name + ".bad")
    path.replace(bad)
    print(f"fetch: {out.name}: {reason}; set aside as {bad}", file=sys.stderr)


def partial_path(out: Path, source: str) -> Path:
    """One partial file per source: two sources may serve different versions of the file."""
    return out.with_name(f"{out.name}.{hashlib.sha1(source.encode()).hexdigest()[:8]}.part")


def fetch(out: Path, sources: list[str], size: int | None = None, digest: str | None = None,
          structure: str | None = None) -> bool:
    """True once `out` holds a file that passes every check."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        try:
            verify(out, size, digest, structure)
            print(f"fetch: {out} already there and verified")
            return True
        except BadFile as e:
            set_aside(out, out, str(e))
    for source in sources:
        part = partial_path(out, source)
        print(f"fetch: {source} -> {out}")
        try:
            download(source, part)
            verify(part, size, digest, structure)
        except (OSError, urllib.error.URLError) as e:
            print(f"fetch: {source}: {e} (partial file kept as {part} for a later resume)", file=sys.stderr)
            continue
        except BadFile as e:
            set_aside(part, out, str(e))
            continue
        part.replace(out)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", help="URL, onedrive:SHARE_URL or gdrive:FILE_ID, tried in turn; "
                                                   "none: check the file already at --out")
    parser.add_argument("--out", required=True, type=Path, help="where the verified file goes")
    parser.add_argument("--size", type=int, help="expected size in bytes")
    parser.add_argument("--digest", help="expected SHA-256 (or, where only that is published, MD5) hex digest")
    parser.add_argument("--check", help="structure check: zip|tar[:members], hdf5[:keys], torch|torchkeys[:manifest.tsv]")
    args = parser.parse_args(argv)
    if args.check and args.check.partition(":")[0] not in CHECKS:
        parser.error(f"--check {args.check}: the kind must be one of {', '.join(CHECKS)}")
    if fetch(args.out, args.sources, args.size, args.digest, args.check):
        return 0
    if not args.sources:
        print(f"fetch: {args.out} is missing or failed its check; delete it and download it again", file=sys.stderr)
        return 1
    print(f"fetch: no source gave a good {args.out} (tried {len(args.sources)}); see the lines above", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
