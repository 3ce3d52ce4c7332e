"""The start of a DICOM Part 10 file: the "DICM" preamble and the file meta group (PS3.10 7.1).

Read from the first bytes of a file, without pydicom: whether a file is DICOM at all, its
transfer syntax, and whether it is a DICOMDIR (the index of a DICOM medium, which holds no
image). Only regular files are opened, non-blocking, so that a pipe never hangs the caller.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

#: Media Storage SOP Class of a DICOMDIR (Media Storage Directory Storage).
MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"
#: The file name PS3.10 gives the media directory.
DICOMDIR_NAME = "DICOMDIR"
#: How much of a file is read to find its file meta group (a few hundred bytes in practice).
SNIFF_BYTES = 4096
_PREAMBLE = 132
# Explicit VR with a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}


@dataclass(frozen=True)
class FileMeta:
    """What the file meta group says: where the dataset starts and two of its UIDs."""

    dataset_start: int
    transfer_syntax: str | None = None
    media_storage_class: str | None = None


def read_head(path: str | Path, size: int = SNIFF_BYTES) -> bytes:
    """The first ``size`` bytes of a regular file; b"" for anything else or on any error.

    Opened non-blocking and checked with fstat, so a pipe swapped in cannot hang the caller.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, size)
    except OSError:
        return b""
    finally:
        os.close(fd)


def has_preamble(head: bytes) -> bool:
    """True when ``head`` starts like a DICOM Part 10 file (128 bytes, then "DICM")."""
    return len(head) >= _PREAMBLE and head[128:_PREAMBLE] == b"DICM"


def scan_file_meta(head: bytes) -> FileMeta:
    """The file meta group (0002,xxxx) at the start of a Part 10 file: always explicit VR
    little endian, right after the preamble. A file without the preamble starts its dataset at
    0; values cut off by the end of ``head`` are left out."""
    if not has_preamble(head):
        return FileMeta(0)
    position = _PREAMBLE
    values: dict[bytes, str] = {}
    while position + 8 <= len(head) and head[position : position + 2] == b"\x02\x00":
        element = head[position + 2 : position + 4]
        vr = head[position + 4 : position + 6]
        if vr in _LONG_VRS:
            length = int.from_bytes(head[position + 8 : position + 12], "little")
            value_at = position + 12
        else:
            length = int.from_bytes(head[position + 6 : position + 8], "little")
            value_at = position + 8
        if element in (b"\x02\x00", b"\x10\x00") and value_at + length <= len(head):
            value = head[value_at : value_at + length].rstrip(b"\0 ")
            values[element] = value.decode("ascii", errors="replace")
        position = value_at + length
    return FileMeta(position, values.get(b"\x10\x00"), values.get(b"\x02\x00"))


def is_dicomdir(path: str | Path, head: bytes | None = None) -> bool:
    """True for a DICOMDIR: named DICOMDIR, or a Part 10 file of Media Storage SOP Class
    1.2.840.10008.1.3.10. ``head``: the file's first bytes when already read (else they are
    read here, from a regular file only)."""
    path = Path(path)
    if path.name.upper() == DICOMDIR_NAME:
        return True
    head = read_head(path) if head is None else head
    return scan_file_meta(head).media_storage_class == MEDIA_DIRECTORY_STORAGE
