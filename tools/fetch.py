"""Resumable, verified download of one file, for the subprojects' `download_data.sh` scripts.

    python tools/fetch.py --out data/gin/ckpt.pth [--size N] [--digest H] [--check torch:MANIFEST.tsv] SOURCE...
    python tools/fetch.py --out data/clip4idc/ckpts/trained [--check ...] gdrive-folder:FOLDER_ID
    python tools/fetch.py --probe https://drive.google.com      (exit 0 when the host answers, 1 when offline)

SOURCE is tried in turn until one gives a file that passes every check:
  https://... / http://...  a plain URL, resumed with HTTP Range requests from a partial file beside OUT;
  onedrive:SHARE_URL        a OneDrive share link (1drv.ms/...), fetched through OneDrive's public shares API;
  gdrive:FILE_ID            a Google Drive file, through gdown (resumes its own partial file);
  gdrive-folder:FOLDER_ID   every file of a Google Drive folder (listed by gdown; `--only PATTERN` keeps the paths that
                            match) into the folder OUT, each fetched as a gdrive: file with the same --check; the only
                            source of its call.
Checks after each download: `--size` and `--digest` when given, then the file's structure (`--check`):
  zip[:member,...]          a readable zip archive holding those members (every member's CRC is checked); a
                            member is a file, a folder or an fnmatch pattern (`*/1_2.png`), as for tar;
  tar[:member,...]          a readable (compressed) tar archive holding those members (read to the end);
  json[:key,...]            a readable JSON file (an object holding those keys);
  hdf5[:key,...]            an HDF5 file holding those datasets or groups;
  torch[:MANIFEST.tsv]      a torch checkpoint whose state dict holds every `key<TAB>shape` line of the manifest
                            (a `module.` prefix and a wrapping `state_dict`/`model` entry are allowed); the file is
                            read without torch and without running its pickle (every storage's bytes must be there);
  torchkeys[:MANIFEST.tsv]  the same for the keys only (where the vocabulary size changes a shape per data set).
A file that fails is moved aside to `OUT.bad` (named in the message) and never used; a file already at OUT that passes
is kept. With no SOURCE, only the file already at OUT is checked (for files another tool downloaded).
Exit 0 on success, 1 when no source gave a good file (one line on stderr says why).

VLREPRO_MIRROR=http://HOST:PORT sends every download to a mirror (the tests' local server): `https://host/path` and
`http://host/path` become `$VLREPRO_MIRROR/host/path`, a OneDrive share the same through the shares API's URL,
`gdrive:ID` becomes `$VLREPRO_MIRROR/gdrive/ID` (plain HTTP, resumed alike), a folder's listing is read from
`$VLREPRO_MIRROR/gdrive-folder/ID` (JSON `[{"id": FILE_ID, "path": NAME}, ...]`), and --probe asks the mirror.
Unset, every source goes to its own host.
"""
from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import http.client
import json
import os
import pickle
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


def mirror_base() -> str | None:
    """The mirror every download goes to (VLREPRO_MIRROR), or None for each source's own host."""
    base = os.environ.get("VLREPRO_MIRROR")
    return base.rstrip("/") if base else None


def mirrored(url: str) -> str:
    """`url` as the mirror serves it (`https://host/path` -> `$VLREPRO_MIRROR/host/path`); unchanged without one."""
    base = mirror_base()
    return f"{base}/{url.split('://', 1)[1]}" if base else url


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


def import_gdown():
    try:
        import gdown
    except ImportError:
        raise OSError("gdown is not installed (pip install gdown)") from None
    return gdown


def gdrive_download(file_id: str, part: Path) -> None:
    gdown = import_gdown()

    if gdown.download(id=file_id, output=str(part), quiet=False, resume=True) is None:
        raise OSError(f"Google Drive refused file id {file_id} (quota, permission or a removed file)")


def http_download_resuming(url: str, part: Path) -> None:
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


def download(source: str, part: Path) -> None:
    if source.startswith("gdrive:"):
        file_id = source.removeprefix("gdrive:")
        if not mirror_base():
            gdrive_download(file_id, part)
            return
        url = f"{mirror_base()}/gdrive/{file_id}"
    elif source.startswith("onedrive:"):
        url = mirrored(onedrive_content_url(source.removeprefix("onedrive:")))
    else:
        url = mirrored(source)
    http_download_resuming(url, part)


def gdrive_folder_listing(folder_id: str) -> list[tuple[str, str]]:
    """(file id, path inside the folder) of every file of a Google Drive folder; a mirror serves the listing as JSON
    at `$VLREPRO_MIRROR/gdrive-folder/ID`: `[{"id": ..., "path": ...}, ...]`."""
    if mirror_base():
        with urllib.request.urlopen(f"{mirror_base()}/gdrive-folder/{folder_id}", timeout=60) as response:
            return [(f["id"], f["path"]) for f in json.load(response)]
    gdown = import_gdown()

    try:
        files = gdown.download_folder(id=folder_id, skip_download=True, quiet=True)
    except Exception as e:  # gdown raises its own errors and requests' for a refused or removed folder
        raise OSError(f"Google Drive folder {folder_id} could not be listed ({type(e).__name__}: {e})") from None
    return [(f.id, f.path) for f in files or []]


def fetch_folder(out: Path, folder_id: str, structure: str | None, only: str | None = None) -> bool:
    """Every file of a Google Drive folder (whose path matches the fnmatch pattern `only`) into `out`, each fetched
    and checked as a `gdrive:` file. The listing is kept in `out` so that a rerun asks Drive for nothing."""
    kept = out / f".gdrive-folder-{folder_id}.json"
    try:
        if kept.exists():
            listing = [tuple(f) for f in json.loads(kept.read_text())]
        else:
            listing = gdrive_folder_listing(folder_id)
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as e:
        print(f"fetch: gdrive-folder:{folder_id}: {e}", file=sys.stderr)
        return False
    if not listing:
        print(f"fetch: gdrive-folder:{folder_id}: the folder lists no files", file=sys.stderr)
        return False
    outside = [path for _, path in listing if Path(path).is_absolute() or ".." in Path(path).parts]
    if outside:
        print(f"fetch: gdrive-folder:{folder_id}: the listing names a path outside the folder ({outside[0]})",
              file=sys.stderr)
        return False
    out.mkdir(parents=True, exist_ok=True)
    kept.with_suffix(".tmp").write_text(json.dumps(listing))
    kept.with_suffix(".tmp").replace(kept)
    chosen = [(file_id, path) for file_id, path in listing if only is None or fnmatch.fnmatchcase(path, only)]
    if not chosen:
        print(f"fetch: gdrive-folder:{folder_id}: no file matches {only}", file=sys.stderr)
        return False
    results = [fetch(out / path, [f"gdrive:{file_id}"], structure=structure) for file_id, path in chosen]
    return all(results)


def reachable(url: str, timeout: float = 10.0) -> bool:
    """True when the host of `url` (or the mirror) answers HTTP at all, whatever the status."""
    request = urllib.request.Request(mirrored(url), method="HEAD", headers={"User-Agent": "vlrepro-fetch/1"})
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_members(names: set[str], members: list[str]) -> list[str]:
    """The members (files, folders given by their path, or fnmatch patterns) that an archive listing lacks."""
    def present(member: str) -> bool:
        if any(c in member for c in "*?["):
            return any(fnmatch.fnmatchcase(n, member) for n in names)
        return member in names or any(n.startswith(member.rstrip("/") + "/") for n in names)
    return [m for m in members if not present(m)]


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


class TensorShape(tuple):
    """A tensor of a checkpoint, read as its shape alone."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self)


class Opaque:
    """Any other object a checkpoint pickles (argparse.Namespace, numpy arrays, optimizer state...): kept, not built."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):  # a pickled function (getattr(cls, name)) applied to its arguments
        return Opaque()

    def __setstate__(self, state):
        pass


class PickledDict(dict):
    """collections.OrderedDict as state_dict() returns it: pickled with a `_metadata` attribute, dropped here."""

    def __setstate__(self, state):
        pass


class StorageType(str):
    """A torch storage class such as `torch.FloatStorage`, by name."""


# bytes per element of the typed storages that torch.save writes
ELEMENT_SIZE = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
                "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "Untyped": 1, "QInt8": 1, "QUInt8": 1,
                "QInt32": 4}
SIZE_ARGUMENT = {"_rebuild_tensor": 2, "_rebuild_tensor_v2": 2, "_rebuild_tensor_v3": 2, "_rebuild_qtensor": 2,
                 "_rebuild_meta_tensor_no_storage": 1}
SAFE_GLOBALS = {("collections", "OrderedDict"): PickledDict, ("builtins", "set"): set,
                ("builtins", "frozenset"): frozenset, ("builtins", "list"): list, ("builtins", "dict"): dict,
                ("builtins", "tuple"): tuple, ("torch", "Size"): tuple,
                ("_codecs", "encode"): lambda text, encoding="latin1": text.encode(encoding)}
KEEP_FIRST_ARGUMENT = {("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state")}


def rebuilt_tensor(size_argument: int) -> Callable[..., TensorShape]:
    return lambda *args: TensorShape(args[size_argument])


def keep_first_argument(*args):
    return args[0]


class ShapeUnpickler(pickle.Unpickler):
    """Reads a checkpoint's pickle into dicts of TensorShape without running any of its code (torch.load with
    weights_only=False would run whatever a wrong download holds) and without importing torch (seconds per file)."""

    def __init__(self, file, storages: dict[str, tuple[str, int]]):
        super().__init__(file, encoding="latin1")
        self.storages = storages  # key -> (storage type, number of elements)

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return SAFE_GLOBALS[module, name]
        if module == "torch._utils" and name in SIZE_ARGUMENT:
            return rebuilt_tensor(SIZE_ARGUMENT[name])
        if (module, name) in KEEP_FIRST_ARGUMENT:
            return keep_first_argument
        if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
            return lambda func, new_type, args, state: func(*args)
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name.removesuffix("Storage"))
        return Opaque

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.60}")
        _, storage_type, key, _location, numel = pid[:5]
        self.storages[str(key)] = (str(storage_type), int(numel))
        return storage_type


def read_zip_checkpoint(path: Path) -> object:
    """torch.save's format since PyTorch 1.6: a zip of `<name>/data.pkl` and one `<name>/data/<key>` per storage."""
    check_zip(path, [])
    with zipfile.ZipFile(path) as z:
        pickles = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise BadFile("a zip archive, but not a torch checkpoint (no <name>/data.pkl)")
        prefix = pickles[0].removesuffix("data.pkl")
        storages: dict[str, tuple[str, int]] = {}
        with z.open(pickles[0]) as f:
            checkpoint = ShapeUnpickler(f, storages).load()
        sizes = {info.filename: info.file_size for info in z.infolist()}
    for key, (storage_type, numel) in storages.items():
        record = f"{prefix}data/{key}"
        if record not in sizes:
            raise BadFile(f"torch checkpoint lacks the storage record {record}")
        if storage_type in ELEMENT_SIZE and sizes[record] != numel * ELEMENT_SIZE[storage_type]:
            raise BadFile(f"storage record {record} holds {sizes[record]} bytes, expected {numel} elements")
    return checkpoint


def read_legacy_checkpoint(path: Path) -> object:
    """torch.save's format before PyTorch 1.6: pickles of a magic number, the protocol, the system, the object and the
    storage keys, then each storage as an int64 element count and its bytes (which must all be there)."""
    storages: dict[str, tuple[str, int]] = {}
    with path.open("rb") as f:
        if ShapeUnpickler(f, storages).load() != 0x1950A86A20F9469CFC6C:
            raise BadFile("not a torch checkpoint (no torch.save magic number)")
        ShapeUnpickler(f, storages).load()
        ShapeUnpickler(f, storages).load()
        checkpoint = ShapeUnpickler(f, storages).load()
        for key in ShapeUnpickler(f, storages).load():
            storage_type, _ = storages[str(key)]
            numel = int.from_bytes(f.read(8), "little")
            if storage_type not in ELEMENT_SIZE:
                raise BadFile(f"storage {key} has an unknown type {storage_type}Storage")
            f.seek(numel * ELEMENT_SIZE[storage_type], os.SEEK_CUR)
        if f.tell() != path.stat().st_size:
            raise BadFile(f"torch checkpoint is {path.stat().st_size} bytes, its storages need {f.tell()}")
    return checkpoint


def read_checkpoint(path: Path) -> object:
    try:
        with path.open("rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        return read_zip_checkpoint(path) if is_zip else read_legacy_checkpoint(path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            UnicodeDecodeError, OSError) as e:
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise BadFile(f"not a readable torch checkpoint ({type(e).__name__}: {first_line})") from None


def state_dict_of(checkpoint) -> dict:
    for wrapper in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
    if not isinstance(checkpoint, dict):
        raise BadFile(f"holds a {type(checkpoint).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def check_torch(path: Path, manifests: list[str], shapes: bool = True) -> None:
    state = state_dict_of(read_checkpoint(path))
    for manifest in manifests:
        expected = read_manifest(Path(manifest))
        # PyTorch <= 0.4.0 wrote no BatchNorm num_batches_tracked; load_state_dict accepts such files.
        missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
        wrong = [k for k in expected if shapes and k in state and getattr(state[k], "shape", None) != expected[k]]
        if missing or wrong:
            example = (missing or wrong)[0]
            raise BadFile(f"state dict differs from {Path(manifest).name}: {len(missing)} keys missing, "
                          f"{len(wrong)} of another shape (e.g. {example})")


def check_json(path: Path, keys: list[str]) -> None:
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (ValueError, OSError) as e:
        raise BadFile(f"not readable JSON ({e})") from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise BadFile(f"JSON lacks {', '.join(missing)}")


CHECKS: dict[str, Callable[[Path, list[str]], None]] = {
    "zip": check_zip, "json": check_json, "tar": check_tar, "hdf5": check_hdf5, "torch": check_torch,
    "torchkeys": lambda path, manifests: check_torch(path, manifests, shapes=False),
}


def verify(path: Path, size: int | None, digest: str | None, structure: str | None) -> None:
    """`digest` is a SHA-256 (64 hex digits), the start of one (8 or more: torchvision names its files so) or, where
    that is all a data set publishes, an MD5 (32)."""
    if size is not None and path.stat().st_size != size:
        raise BadFile(f"{path.stat().st_size} bytes, expected {size}")
    algorithm = "md5" if digest is not None and len(digest) == 32 else "sha256"
    if digest is not None and not file_digest(path, algorithm).startswith(digest.lower()):
        raise BadFile(f"checksum differs from the published one ({digest})")
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
    parser.add_argument("sources", nargs="*", help="URL, onedrive:SHARE_URL, gdrive:FILE_ID or "
                                                   "gdrive-folder:FOLDER_ID, tried in turn; none: check the file "
                                                   "already at --out")
    parser.add_argument("--out", type=Path, help="where the verified file goes (a folder for gdrive-folder:)")
    parser.add_argument("--size", type=int, help="expected size in bytes")
    parser.add_argument("--digest", help="expected SHA-256 (or its first 8+ digits; or, where only that is published, "
                                         "MD5) hex digest")
    parser.add_argument("--check", help="structure check: zip|tar[:members], json[:keys], hdf5[:keys], "
                                        "torch|torchkeys[:manifest.tsv]")
    parser.add_argument("--only", metavar="PATTERN", help="gdrive-folder: only the files whose path matches this "
                                                          "fnmatch pattern")
    parser.add_argument("--probe", metavar="URL", help="only say by the exit status (0/1) whether URL's host, or "
                                                       "the mirror, answers")
    args = parser.parse_args(argv)
    if args.probe:
        return 0 if reachable(args.probe) else 1
    if args.out is None:
        parser.error("--out is required (or --probe URL)")
    if args.check and args.check.partition(":")[0] not in CHECKS:
        parser.error(f"--check {args.check}: the kind must be one of {', '.join(CHECKS)}")
    folders = [s for s in args.sources if s.startswith("gdrive-folder:")]
    if folders:
        if len(args.sources) > 1 or args.size is not None or args.digest is not None:
            parser.error("gdrive-folder: is the only source of its call and takes --check alone (it applies to "
                         "every file of the folder)")
        return 0 if fetch_folder(args.out, folders[0].removeprefix("gdrive-folder:"), args.check, args.only) else 1
    if fetch(args.out, args.sources, args.size, args.digest, args.check):
        return 0
    if not args.sources:
        print(f"fetch: {args.out} is missing or failed its check; delete it and download it again", file=sys.stderr)
        return 1
    print(f"fetch: no source gave a good {args.out} (tried {len(args.sources)}); see the lines above", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
