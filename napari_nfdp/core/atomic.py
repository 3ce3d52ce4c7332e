"""Atomic file writes: readers see the old file or the new one, never a partial one.

The temporary file of a write is ``.<name>.<random>.tmp`` beside the target; a process killed
mid-write leaves it behind, and :func:`remove_stale_temporaries` clears such leftovers.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)
STALE_SECONDS = 3600.0  # a temporary file this old belongs to no running write
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")


class ReadOnlyFileError(PermissionError):
    """The file to replace is read-only (no write permission bits): it is respected."""


def atomic_write(
    path: str | Path, write: Callable[[IO[Any]], object], *, text: bool = False
) -> Path:
    """Call ``write`` on a temporary file beside ``path``, sync it, then rename it into place.

    Text mode is UTF-8 with no newline translation (right for CSV and JSON). The new file
    keeps the permissions of the one it replaces; a read-only file (no write bit at all, e.g.
    mode 0444) is not replaced: ReadOnlyFileError. On any error the old file is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    if path.exists() and not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise ReadOnlyFileError(f"{path.name} is read-only (mode {mode:o}); it was not replaced")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        opened = (
            os.fdopen(handle, "w", encoding="utf-8", newline="")
            if text
            else os.fdopen(handle, "wb")
        )
        with opened as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | Path, older_than: float = STALE_SECONDS) -> int:
    """Delete this module's leftover temporary files in ``folder`` (not its subfolders) whose
    last change is more than ``older_than`` seconds ago; return how many were removed.

    Only names of the form ``.<name>.<random>.tmp`` are touched; errors are logged, not raised.
    """
    folder = Path(folder)
    removed, limit = 0, time.time() - older_than
    try:
        candidates = [p for p in folder.iterdir() if _TEMPORARY.match(p.name)]
    except OSError:
        return 0
    for candidate in candidates:
        try:
            if candidate.is_file() and candidate.stat().st_mtime < limit:
                candidate.unlink()
                removed += 1
        except OSError as error:
            logger.warning("could not remove the stale temporary file %s: %s", candidate, error)
    if removed:
        logger.info("removed %d stale temporary file(s) in %s", removed, folder)
    return removed
