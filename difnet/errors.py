"""Errors a user can cause (paths, keys, shapes, flags); entry scripts print them as one line and exit with 2."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import Callable, TypeVar

T = TypeVar("T")

DATA_FIX = "run 'make difnet-data' (or 'make difnet-toy' for the toy set) or pass the right path"
EXIT_USAGE = 2
_WORKER_PREFIX = "DifnetError: "


class DifnetError(Exception):
    """A problem with the user's inputs: the message names the file/key/flag and the fix."""


def one_line(error: DifnetError) -> str:
    """The message; one raised in a DataLoader worker arrives wrapped in the worker's traceback, whose last line
    is the original message."""
    lines = str(error).strip().splitlines()
    last = lines[-1] if lines else ""
    return last.split(_WORKER_PREFIX, 1)[1] if len(lines) > 1 and _WORKER_PREFIX in last else " ".join(lines)


def run_entry_point(main: Callable[[], T]) -> T:
    """Run a script's main: a DifnetError ends the process with one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        return main()
    except DifnetError as e:
        print(f"difnet: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def ensure_writable_dir(path: str, flag: str) -> None:
    """Create ``path`` if needed and check that a file can be written there, before any work is done."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_check"):
            pass
    except OSError as e:
        raise DifnetError(f"cannot write to {path} ({flag}): {e.strerror or e}; pass a writable folder") from None
