"""Errors a user can cause end the scripts with one line naming the file, key or flag, and the fix (exit status 2)."""
from __future__ import annotations

import sys
from typing import Callable

from dataloaders.rawimage_util import DataError
from modules.build import CheckpointError
from modules.module_clip import ClipArchiveError
from modules.tokenization_clip import VocabularyError

USER_ERRORS = (DataError, CheckpointError, ClipArchiveError, VocabularyError, FileNotFoundError, PermissionError)
USAGE_OR_DATA_ERROR = 2


def one_line(err: Exception) -> str:
    """The error's own message; an error re-raised from a DataLoader worker carries the worker's traceback text, whose
    last line is ``<module>.<Class>: <message>``."""
    message = str(err).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message.splitlines()[0] if message else type(err).__name__


def run_cli(main: Callable[[], object]) -> int:
    try:
        main()
    except USER_ERRORS as err:
        print(f"clip4idc: error: {one_line(err)}", file=sys.stderr)
        return USAGE_OR_DATA_ERROR
    return 0
