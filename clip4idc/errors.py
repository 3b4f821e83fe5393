"""Errors a user can cause end the scripts with one line naming the file, key or flag, and the fix."""
from __future__ import annotations

from typing import Callable

from dataloaders.rawimage_util import DataError
from modules.build import CheckpointError
from modules.module_clip import ClipArchiveError
from modules.tokenization_clip import VocabularyError

USER_ERRORS = (DataError, CheckpointError, ClipArchiveError, VocabularyError, FileNotFoundError)


def run_cli(main: Callable[[], object]) -> int:
    try:
        main()
    except USER_ERRORS as err:
        raise SystemExit(f"clip4idc: error: {err}") from None
    return 0
