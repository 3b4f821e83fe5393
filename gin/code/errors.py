"""Errors a user can cause; the entry scripts turn them into one line naming the file/key/flag and the fix."""
from __future__ import annotations

import sys
from typing import NoReturn

USAGE_EXIT_CODE = 2  # bad flags, data or files (argparse's code for usage errors)


class GinError(Exception):
    """Base class: its message is the whole story (what is wrong, where, how to fix it)."""


class DataError(GinError):
    """Missing or malformed data files."""


class CorruptSampleError(DataError):
    """One sample's file cannot be decoded (``--skip_corrupt`` skips such samples)."""


class CheckpointError(GinError):
    """Missing or incompatible checkpoints."""


class ConfigError(GinError):
    """A bad flag, key or value on the command line or in a config file."""


def one_line(exc: GinError) -> str:
    """The user-facing line of ``exc``; a DataLoader worker re-raises it with its traceback, whose last line is
    ``errors.DataError: <message>``."""
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return last.split(f"{type(exc).__name__}: ", 1)[-1]


def exit_with(exc: GinError) -> NoReturn:
    """Print ``error: <the line>`` on stderr and exit with code 2 (no traceback)."""
    print(f"error: {one_line(exc)}", file=sys.stderr)
    raise SystemExit(USAGE_EXIT_CODE)
