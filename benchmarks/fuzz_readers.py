"""Fuzz the image readers with mutated real files, each read in a child process under limits.

Seeds are real files: the CR films and other images of pydicom-data (JPEG 2000, uncompressed,
deflated, RLE, JPEG) and the 16-bit films of ``sample_data`` (PNG, and the same film written as
zlib TIFF, BMP and JPEG). Each case mutates one seed with one of:

- ``flip``: 1 to 24 random bytes flipped, most of them in the first 4 KB (the headers);
- ``truncate``: the file cut short, usually inside its first 64 KB;
- ``field``: a header field set to an awkward value (0, 1, 65535, 2**31, 2**32 - 1...):
  PNG IHDR (CRC recomputed), TIFF tags and IFD links, BMP header, JPEG SOF, DICOM Rows /
  Columns / NumberOfFrames / SamplesPerPixel / BitsAllocated... (rewritten through pydicom, so
  deflated files stay deflated), the JPEG 2000 SIZ marker, DICOM element and fragment lengths;
- ``chunk``: a random chunk of bytes (random or copied from elsewhere) inserted or overwritten.

Five more cases are not mutations but the largest legal inputs, each a few hundred KB on
disk: MAX_PIXELS images (10000 x 10000) as a 16-bit grey PNG, an 8-bit RGBA zlib TIFF, a
deflated, windowed 16-bit DICOM and a deflated RGB DICOM, and a 16-bit RGBA TIFF at
MAX_DECODED_BYTES (7071 x 7071).
They must be read, and they show what memory a legal input can cost (``--no-extremes`` skips
them).

Each file is read by ``napari_nfdp._reader.read_layer`` (what the napari reader and the
dock widget do: ``read_image`` then ``to_grey_float32``) in a forked child with an address-space
limit (``RLIMIT_AS``) and a CPU-time limit, and a wall-clock limit enforced by the parent. The
outcome is one of: ``refused`` (ImageReadError or ImageError: a clear message),
``refused: out of memory`` (a MemoryError wrapped by the reader: a guard that did not hold),
``read``, ``unexpected exception`` (any other type reached the caller), ``crashed`` (the child
died from a signal) and ``hung`` (over the time limit). The peak memory of each child is its
``ru_maxrss``, which includes the parent's resident pages it starts with (the baseline printed).

Targets: no unexpected exception types, no hangs, no crashes, no refusal caused by running out
of memory, and a peak under 1.5 GB on every input (all inputs are under 10 MB).

Example (a few minutes on 2 cores)::

    python benchmarks/fuzz_readers.py --cases 300 --jobs 2
"""

from __future__ import annotations

import os

# One BLAS thread in every child: its buffers would otherwise count against RLIMIT_AS.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import tifffile  # noqa: E402
from PIL import Image  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from napari_nfdp._reader import read_layer  # noqa: E402
from napari_nfdp.core.preprocess import ImageError  # noqa: E402
from napari_nfdp.io.images import MAX_DECODED_BYTES, MAX_PIXELS, ImageReadError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DICOM_SEEDS = (
    "RG3_J2KI.dcm",  # CR, JPEG 2000 (lossy), MONOCHROME1
    "RG1_J2KI.dcm",  # CR, JPEG 2000 (lossy)
    "RG3_J2KR.dcm",  # CR, JPEG 2000 (lossless)
    "RG3_UNCR.dcm",  # CR, uncompressed, 6.2 MB
    "image_dfl.dcm",  # deflated explicit VR little endian
    "MR_small_RLE.dcm",  # RLE lossless
    "SC_rgb.dcm",  # RGB, uncompressed
    "JPEG-lossy.dcm",  # JPEG extended (no decoder installed here: refused)
    "SC_jpeg_no_color_transform.dcm",  # JPEG baseline
)
OUTCOMES = (
    "refused",
    "refused: out of memory",
    "read",
    "unexpected exception",
    "crashed",
    "hung",
)
PEAK_TARGET_MB = 1500.0
AWKWARD = (0, 1, 2, 3, 4, 5, 8, 16, 31, 32, 255, 256, 4096, 30000, 32767, 32768, 40960, 65535)
AWKWARD_32 = AWKWARD + (65536, 10**6, 2**31 - 1, 2**31, 2**32 - 1)


@dataclass
class Case:
    """One mutated file and what reading it did."""

    index: int
    seed: str
    mutation: str
    detail: str
    path: str
    size: int
    outcome: str = ""
    error_type: str = ""
    cause_type: str = ""
    message: str = ""
    shape: list[int] = field(default_factory=list)
    seconds: float = 0.0
    peak_mb: float = 0.0


# --- seeds ----------------------------------------------------------------------------------


def make_seeds(folder: Path) -> list[Path]:
    """The real seed files: pydicom-data's, sample_data's PNG films and one film re-encoded as
    zlib TIFF, BMP and JPEG."""
    seeds = [Path(get_testdata_file(name)) for name in DICOM_SEEDS]
    films = sorted((REPO / "sample_data").glob("*.png"))
    seeds += films
    film = np.asarray(Image.open(films[0]))
    eight = (film >> 8).astype(np.uint8)
    tifffile.imwrite(folder / "film_zlib.tif", film, compression="zlib")
    tifffile.imwrite(folder / "film_rgb.tif", np.dstack([eight[::2, ::2]] * 3), photometric="rgb")
    Image.fromarray(eight).save(folder / "film.bmp")
    Image.fromarray(eight).save(folder / "film.jpg", quality=90)
    seeds += [folder / n for n in ("film_zlib.tif", "film_rgb.tif", "film.bmp", "film.jpg")]
    return seeds


# --- mutations ------------------------------------------------------------------------------


def _position(rng: random.Random, size: int, header_bias: float = 0.7, head: int = 4096) -> int:
    if size <= 1:
        return 0
    if rng.random() < header_bias:
        return rng.randrange(min(size, head))
    return rng.randrange(size)


def mutate_flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    count = rng.randint(1, 24)
    for _ in range(count):
        position = _position(rng, len(out))
        out[position] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
    return bytes(out), f"{count} bytes"


def mutate_truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = _position(rng, len(data), header_bias=0.6, head=65536)
    return data[:cut], f"at {cut} of {len(data)}"


def mutate_chunk(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    length = rng.choice((1, 4, 16, 256, 4096, rng.randint(1, 65536)))
    if rng.random() < 0.5 or len(data) < 2:
        chunk = rng.randbytes(length)
        source = "random"
    else:
        start = rng.randrange(len(data))
        chunk = data[start : start + length]
        source = f"copied from {start}"
    position = _position(rng, len(data))
    if rng.random() < 0.5:
        return data[:position] + chunk + data[
            position:
        ], f"{len(chunk)} {source} bytes at {position}"
    end = position + len(chunk)
    return data[:position] + chunk + data[end:], f"{len(chunk)} {source} bytes over {position}"


def _awkward(rng: random.Random, wide: bool = False) -> int:
    return rng.choice(AWKWARD_32 if wide else AWKWARD)


def mutate_png(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    if out[12:16] != b"IHDR":
        return mutate_flip(data, rng)
    which = rng.choice(("width", "height", "both", "depth", "colour", "interlace", "idat_len"))
    if which in ("width", "height", "both"):
        width, height = struct.unpack(">II", out[16:24])
        width = _awkward(rng, True) if which != "height" else width
        height = _awkward(rng, True) if which != "width" else height
        out[16:24] = struct.pack(">II", width, height)
        detail = f"IHDR {width} x {height}"
    elif which == "depth":
        out[24] = rng.choice((0, 1, 2, 3, 7, 16, 32, 255))
        detail = f"IHDR bit depth {out[24]}"
    elif which == "colour":
        out[25] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 255))
        detail = f"IHDR colour type {out[25]}"
    elif which == "interlace":
        out[28] = rng.choice((1, 2, 255))
        detail = f"IHDR interlace {out[28]}"
    else:
        idat = out.find(b"IDAT")
        if idat < 4:
            return mutate_flip(data, rng)
        value = _awkward(rng, True)
        out[idat - 4 : idat] = struct.pack(">I", value)
        return bytes(out), f"IDAT length {value} (CRC left)"
    out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out), detail + " (CRC recomputed)"


_TIFF_TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 322, 323, 324, 325, 338, 339)


def mutate_tiff(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    if out[:4] not in (b"II*\0", b"MM\0*"):
        return mutate_flip(data, rng)
    order = "<" if out[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", out[4:8])
    if ifd + 2 > len(out):
        return mutate_flip(data, rng)
    (count,) = struct.unpack(order + "H", out[ifd : ifd + 2])
    entries = []
    for i in range(count):
        at = ifd + 2 + 12 * i
        if at + 12 > len(out):
            break
        tag, kind, n = struct.unpack(order + "HHI", out[at : at + 8])
        entries.append((at, tag, kind, n))
    action = rng.choice(("value", "value", "value", "count", "next_ifd", "type"))
    if action == "next_ifd":
        link = ifd + 2 + 12 * count
        value = rng.choice((8, ifd, 0xFFFFFFFF, len(out) - 2, rng.randrange(len(out))))
        if link + 4 <= len(out):
            out[link : link + 4] = struct.pack(order + "I", value)
        return bytes(out), f"next IFD -> {value}"
    chosen = [e for e in entries if e[1] in _TIFF_TAGS] or entries
    if not chosen:
        return mutate_flip(data, rng)
    at, tag, kind, n = rng.choice(chosen)
    if action == "count":
        value = _awkward(rng, True)
        out[at + 4 : at + 8] = struct.pack(order + "I", value)
        return bytes(out), f"tag {tag} count {value}"
    if action == "type":
        new_kind = rng.choice((0, 1, 2, 3, 4, 5, 11, 12, 16, 99))
        out[at + 2 : at + 4] = struct.pack(order + "H", new_kind)
        return bytes(out), f"tag {tag} type {new_kind}"
    value = _awkward(rng, True)
    out[at + 2 : at + 8] = struct.pack(order + "HI", 4, 1)  # one LONG, inline
    out[at + 8 : at + 12] = struct.pack(order + "I", value)
    return bytes(out), f"tag {tag} = {value}"


_BMP_FIELDS = {  # name: (offset, struct format)
    "offset": (10, "<I"),
    "width": (18, "<i"),
    "height": (22, "<i"),
    "planes": (26, "<H"),
    "bits": (28, "<H"),
    "compression": (30, "<I"),
    "image size": (34, "<I"),
    "colours": (46, "<I"),
}


def mutate_bmp(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    name = rng.choice(tuple(_BMP_FIELDS))
    offset, fmt = _BMP_FIELDS[name]
    value = _awkward(rng, True)
    if fmt == "<i":
        value = rng.choice((value % 2**31, -(value % 2**31)))
    elif fmt == "<H":
        value %= 2**16
    out[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(out), f"BMP {name} = {value}"


def _jpeg_sof(data: bytes) -> int:
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2", b"\xff\xc3", b"\xff\xf7"):
        position = data.find(marker)
        if position >= 0:
            return position
    return -1


def mutate_jpeg_sof(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    sof = _jpeg_sof(data)
    if sof < 0 or sof + 10 > len(out):
        return mutate_flip(data, rng)
    which = rng.choice(("height", "width", "both", "components", "precision"))
    if which == "components":
        out[sof + 9] = rng.choice((0, 2, 4, 5, 255))
        return bytes(out), f"SOF components {out[sof + 9]}"
    if which == "precision":
        out[sof + 4] = rng.choice((0, 1, 7, 17, 255))
        return bytes(out), f"SOF precision {out[sof + 4]}"
    height, width = struct.unpack(">HH", out[sof + 5 : sof + 9])
    height = _awkward(rng) if which != "width" else height
    width = _awkward(rng) if which != "height" else width
    out[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(out), f"SOF {height} x {width}"


def mutate_j2k_siz(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    soc = data.find(b"\xff\x4f\xff\x51")
    if soc < 0:
        return mutate_flip(data, rng)
    fields = {"Xsiz": 8, "Ysiz": 12, "XOsiz": 16, "YOsiz": 20, "XTsiz": 24, "YTsiz": 28}
    name = rng.choice((*fields, "both", "Csiz"))
    if name == "Csiz":
        value = rng.choice((0, 2, 3, 4, 5, 255, 16384, 65535))
        out[soc + 40 : soc + 42] = struct.pack(">H", value)
        return bytes(out), f"J2K Csiz {value}"
    if name == "both":
        value = _awkward(rng, True)
        out[soc + 8 : soc + 16] = struct.pack(">II", value, value)
        return bytes(out), f"J2K Xsiz = Ysiz = {value}"
    value = _awkward(rng, True)
    out[soc + fields[name] : soc + fields[name] + 4] = struct.pack(">I", value)
    return bytes(out), f"J2K {name} {value}"


_DICOM_INTS = {
    "Rows": "US",
    "Columns": "US",
    "SamplesPerPixel": "US",
    "BitsAllocated": "US",
    "BitsStored": "US",
    "HighBit": "US",
    "PixelRepresentation": "US",
    "PlanarConfiguration": "US",
    "NumberOfFrames": "IS",
}


_BAD_IS = ("1A", "-1", "1e9", " ", "4.5", "0x10", "9999999999")


def mutate_dicom_elements(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Set one to three image-description elements to awkward values, through pydicom (so a
    deflated file is re-deflated and element lengths stay consistent). NumberOfFrames may also
    get a string that is not a number, patched into the bytes (not in deflated files)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
            deflated = ds.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
        except Exception:
            return mutate_flip(data, rng)
        changes = []
        bad_frames = None
        for keyword in rng.sample(tuple(_DICOM_INTS), rng.randint(1, 3)):
            if _DICOM_INTS[keyword] == "US":
                value: Any = _awkward(rng)
            elif not deflated and rng.random() < 0.5:
                bad_frames = rng.choice(_BAD_IS)
                value = "7" * len(bad_frames)  # placeholder, patched below
            else:
                value = rng.choice(("0", "2", "3", "999999", "2147483647"))
            ds[keyword] = pydicom.DataElement(keyword, _DICOM_INTS[keyword], value)
            changes.append(
                f"{keyword}={bad_frames if keyword == 'NumberOfFrames' and bad_frames else value!r}"
            )
        if rng.random() < 0.2:
            value = rng.choice(("MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL", "XYZ"))
            ds.PhotometricInterpretation = value
            changes.append(f"PhotometricInterpretation={value}")
        buffer = io.BytesIO()
        try:
            ds.save_as(buffer, enforce_file_format=False)
        except Exception:
            return mutate_flip(data, rng)
    out = buffer.getvalue()
    if bad_frames is not None:
        placeholder = "7" * len(bad_frames)
        padded = placeholder + (" " if len(placeholder) % 2 else "")
        encoded = bad_frames + (" " if len(bad_frames) % 2 else "")
        for prefix in (b"\x28\x00\x08\x00IS", b"\x28\x00\x08\x00"):
            element = prefix + struct.pack("<H" if len(prefix) == 6 else "<I", len(padded))
            position = out.find(element + padded.encode())
            if position >= 0:
                start = position + len(element)
                out = out[:start] + encoded.encode() + out[start + len(encoded) :]
                break
    return out, ", ".join(changes)


def mutate_dicom_lengths(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Set the length of the pixel data element or of an encapsulated fragment item."""
    out = bytearray(data)
    targets = []
    for vr in (b"OB", b"OW"):
        position = data.find(b"\xe0\x7f\x10\x00" + vr + b"\0\0")
        if position >= 0:
            targets.append(("PixelData length", position + 8))
    items: list[int] = []
    position = data.find(b"\xfe\xff\x00\xe0")
    while position >= 0 and len(items) < 8:
        items.append(position)
        position = data.find(b"\xfe\xff\x00\xe0", position + 1)
    targets += [(f"item {n} length", i + 4) for n, i in enumerate(items)]
    if not targets:
        return mutate_flip(data, rng)
    name, at = rng.choice(targets)
    value = _awkward(rng, True)
    out[at : at + 4] = struct.pack("<I", value)
    return bytes(out), f"{name} = {value}"


def mutate_field(seed: Path, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A format-aware header-field mutation."""
    suffix = seed.suffix.lower()
    if suffix == ".png":
        return mutate_png(data, rng)
    if suffix in (".tif", ".tiff"):
        return mutate_tiff(data, rng)
    if suffix == ".bmp":
        return mutate_bmp(data, rng)
    if suffix in (".jpg", ".jpeg"):
        return mutate_jpeg_sof(data, rng)
    choice = rng.random()
    if choice < 0.5:
        return mutate_dicom_elements(data, rng)
    if choice < 0.75 and b"\xff\x4f\xff\x51" in data:
        return mutate_j2k_siz(data, rng)
    if choice < 0.75 and _jpeg_sof(data) >= 0 and b"\xff\xd8" in data:
        return mutate_jpeg_sof(data, rng)
    return mutate_dicom_lengths(data, rng)


MUTATIONS = (("flip", 0.3), ("truncate", 0.15), ("field", 0.35), ("chunk", 0.2))
KINDS = (*(m for m, _ in MUTATIONS), "largest legal")


def make_case(index: int, seeds: list[Path], folder: Path, rng: random.Random) -> Case:
    """Mutate one seed (round robin) and write it into ``folder``."""
    seed = seeds[index % len(seeds)]
    data = seed.read_bytes()
    kind = rng.choices([m for m, _ in MUTATIONS], [w for _, w in MUTATIONS])[0]
    if kind == "flip":
        mutated, detail = mutate_flip(data, rng)
    elif kind == "truncate":
        mutated, detail = mutate_truncate(data, rng)
    elif kind == "chunk":
        mutated, detail = mutate_chunk(data, rng)
    else:
        mutated, detail = mutate_field(seed, data, rng)
    suffix = seed.suffix
    if suffix == ".dcm" and rng.random() < 0.15:
        suffix = ""  # found by its DICM preamble
    path = folder / f"case{index:04d}_{seed.stem}{suffix}"
    path.write_bytes(mutated)
    return Case(index, seed.name, kind, detail, str(path), len(mutated))


# --- the largest legal inputs -------------------------------------------------------------------


def _zeros_zlib(total: int, raw: bool = False, chunk: int = 16 << 20) -> bytes:
    """A zlib (or raw deflate) stream of ``total`` zero bytes, made in milliseconds: a
    full-flushed block of zeros is self-contained, so it is repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    rest = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = block * (total // chunk) + rest.compress(bytes(total % chunk)) + rest.flush()
    if raw:
        return body
    adler = (total % 65521) << 16 | 1  # Adler-32 of zeros
    return b"\x78\xda" + body + adler.to_bytes(4, "big")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _extreme_png(path: Path, side: int) -> None:
    """16-bit grey, ``side`` x ``side``, all zeros."""
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    idat = _zeros_zlib(side * (2 * side + 1))
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
    path.write_bytes(png + _png_chunk(b"IEND", b""))


def _extreme_tiff(path: Path, side: int, samples: int, bits: int) -> None:
    """One zlib strip of zeros, chunky, ``samples`` x ``bits``-bit samples (RGB(A) for 3-4)."""
    strip = _zeros_zlib(side * side * samples * bits // 8)
    photometric = 2 if samples >= 3 else 1
    tags = [
        (256, 4, [side]),
        (257, 4, [side]),
        (258, 3, [bits] * samples),
        (259, 3, [8]),
        (262, 3, [photometric]),
        (273, 4, [0]),
        (277, 3, [samples]),
        (278, 4, [side]),
        (279, 4, [len(strip)]),
    ]
    if samples in (2, 4):
        tags.append((338, 3, [2]))  # unassociated alpha
    ifd_size = 2 + 12 * len(tags) + 4
    extra_size = sum(2 * len(v) for _, k, v in tags if k == 3 and len(v) > 2)
    strip_offset = 8 + ifd_size + extra_size
    entries, extra = bytearray(), bytearray()
    for tag, kind, values in tags:
        values = [strip_offset] if tag == 273 else values
        packed = struct.pack(f"<{len(values)}{'H' if kind == 3 else 'I'}", *values)
        if len(packed) > 4:
            field_bytes = struct.pack("<I", 8 + ifd_size + len(extra))
            extra += packed
        else:
            field_bytes = packed.ljust(4, b"\0")
        entries += struct.pack("<HHI", tag, kind, len(values)) + field_bytes
    head = b"II*\0" + struct.pack("<IH", 8, len(tags))
    path.write_bytes(head + entries + b"\0\0\0\0" + extra + strip)


def _extreme_dicom(path: Path, side: int, colour: bool = False) -> None:
    """Deflated, ``side`` x ``side``: 16-bit grey with a window (the float64 LUT path), or
    8-bit RGB."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = "SC_rgb.dcm" if colour else "RG3_UNCR.dcm"
        ds = pydicom.dcmread(get_testdata_file(source), stop_before_pixels=True)
    ds.Rows = ds.Columns = side
    if not colour:
        ds.WindowCenter, ds.WindowWidth = 500, 1000
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    pixels = side * side * (3 if colour else 2)
    vr = b"OB" if colour else b"OW"
    header = body.getvalue() + b"\xe0\x7f\x10\x00" + vr + b"\0\0" + struct.pack("<I", pixels)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    out = DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, ds.file_meta)
    path.write_bytes(out.getvalue() + stream + _zeros_zlib(pixels, raw=True))


def make_extremes(first_index: int, folder: Path) -> list[Case]:
    """The largest images the readers accept (MAX_PIXELS), tiny on disk: what a legal input
    can cost. Not mutations: they must all be read."""

    def side(pixel_bytes: int) -> int:
        return math.isqrt(min(MAX_PIXELS, MAX_DECODED_BYTES // pixel_bytes))

    makers = [
        ("max_grey16.png", "PNG 16-bit grey", 2, lambda p, n: _extreme_png(p, n)),
        ("max_rgba8.tif", "TIFF zlib RGBA 8-bit", 4, lambda p, n: _extreme_tiff(p, n, 4, 8)),
        ("max_rgba16.tif", "TIFF zlib RGBA 16-bit", 8, lambda p, n: _extreme_tiff(p, n, 4, 16)),
        ("max_deflated.dcm", "DICOM deflated 16-bit, windowed", 2, _extreme_dicom),
        (
            "max_rgb.dcm",
            "DICOM deflated RGB 8-bit",
            3,
            lambda p, n: _extreme_dicom(p, n, colour=True),
        ),
    ]
    cases = []
    for offset, (name, what, pixel_bytes, make) in enumerate(makers):
        path = folder / name
        make(path, side(pixel_bytes))
        detail = f"{what}, {side(pixel_bytes)} x {side(pixel_bytes)}"
        size = path.stat().st_size
        cases.append(Case(first_index + offset, name, "largest legal", detail, str(path), size))
    return cases


# --- running one case in a child --------------------------------------------------------------


def _type_name(error: BaseException) -> str:
    """``zlib.error`` rather than ``error``; builtins stay bare."""
    kind = type(error)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _child(path: str, write_fd: int, memory_bytes: int, cpu_seconds: int) -> None:
    """Runs in the forked child: limits, read, one JSON line to the parent, then _exit."""
    code = 0
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        result: dict[str, Any]
        try:
            data, _, _ = read_layer(path)
            result = {"outcome": "read", "shape": list(np.shape(data))}
        except (ImageReadError, ImageError) as error:
            cause = error.__cause__
            while isinstance(cause, ImageReadError | ImageError):  # re-raised with the name
                cause = cause.__cause__
            out_of_memory = isinstance(cause, MemoryError)
            result = {
                "outcome": "refused: out of memory" if out_of_memory else "refused",
                "error_type": type(error).__name__,
                "cause_type": _type_name(cause) if cause is not None else "",
                "message": str(error)[:400],
            }
        except BaseException as error:  # the point is to see every type
            result = {
                "outcome": "unexpected exception",
                "error_type": _type_name(error),
                "message": str(error)[:400],
            }
        os.write(write_fd, (json.dumps(result) + "\n").encode())
    except BaseException:  # never return into the parent's code
        code = 3
    finally:
        os._exit(code)


@dataclass
class _Running:
    case: Case
    pid: int
    read_fd: int
    start: float
    chunks: list[bytes] = field(default_factory=list)


def _start(case: Case, memory_bytes: int, cpu_seconds: int) -> _Running:
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(case.path, write_fd, memory_bytes, cpu_seconds)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return _Running(case, pid, read_fd, start)


def _drain(run: _Running) -> None:
    while True:
        try:
            chunk = os.read(run.read_fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            return
        run.chunks.append(chunk)


def _finish(run: _Running, status: int, usage: resource.struct_rusage, hung: bool) -> Case:
    _drain(run)
    os.close(run.read_fd)
    case = run.case
    case.seconds = time.perf_counter() - run.start
    case.peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    text = b"".join(run.chunks).decode(errors="replace").strip()
    if hung or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU):
        case.outcome = "hung"
    elif text:
        result = json.loads(text.splitlines()[-1])
        case.outcome = result["outcome"]
        case.error_type = result.get("error_type", "")
        case.cause_type = result.get("cause_type", "")
        case.message = result.get("message", "")
        case.shape = result.get("shape", [])
    else:
        case.outcome = "crashed"
        if os.WIFSIGNALED(status):
            case.message = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            case.message = f"exit status {os.WEXITSTATUS(status)} without a result"
    return case


def run_cases(
    cases: list[Case], jobs: int, timeout: float, memory_mb: int, progress: bool = True
) -> list[Case]:
    """Read every case in a child, ``jobs`` at a time."""
    memory_bytes = memory_mb << 20
    cpu_seconds = int(timeout) + 2
    pending = list(cases)
    running: list[_Running] = []
    done: list[Case] = []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(_start(pending.pop(0), memory_bytes, cpu_seconds))
        select.select([r.read_fd for r in running], [], [], 0.02)
        for run in list(running):
            _drain(run)
            pid, status, usage = os.wait4(run.pid, os.WNOHANG)
            hung = False
            if pid == 0:
                if time.perf_counter() - run.start <= timeout:
                    continue
                os.kill(run.pid, signal.SIGKILL)
                _, status, usage = os.wait4(run.pid, 0)
                hung = True
            running.remove(run)
            done.append(_finish(run, status, usage, hung))
            if progress and len(done) % 25 == 0:
                print(f"{len(done)}/{len(cases)} cases", file=sys.stderr, flush=True)
    return sorted(done, key=lambda c: c.index)


def baseline_mb() -> float:
    """ru_maxrss of a child that does nothing: the memory every child starts with."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_maxrss / 1024


# --- report ---------------------------------------------------------------------------------


def summary_rows(cases: list[Case]) -> list[list[Any]]:
    """One row per outcome: count, share, median and max seconds, max peak memory."""
    rows = []
    for outcome in OUTCOMES:
        group = [c for c in cases if c.outcome == outcome]
        if not group:
            rows.append([outcome, 0, "0 %", "n/a", "n/a", "n/a"])
            continue
        seconds = [c.seconds for c in group]
        rows.append(
            [
                outcome,
                len(group),
                f"{100 * len(group) / len(cases):.0f} %",
                f"{float(np.median(seconds)):.2f}",
                f"{max(seconds):.2f}",
                f"{max(c.peak_mb for c in group):.0f}",
            ]
        )
    rows.append(
        [
            "**all**",
            len(cases),
            "100 %",
            f"{float(np.median([c.seconds for c in cases])):.2f}",
            f"{max(c.seconds for c in cases):.2f}",
            f"{max(c.peak_mb for c in cases):.0f}",
        ]
    )
    return rows


def _cell(text: str, limit: int = 110) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def case_rows(cases: list[Case]) -> list[list[Any]]:
    """Table rows describing individual cases."""
    return [
        [
            c.index,
            c.seed,
            f"{c.mutation}: {_cell(c.detail, 50)}",
            f"{c.size / 1e6:.2f}",
            c.outcome,
            f"{c.seconds:.2f}",
            f"{c.peak_mb:.0f}",
            _cell(f"{c.error_type}{' <- ' + c.cause_type if c.cause_type else ''}: {c.message}")
            if c.error_type or c.message
            else "",
        ]
        for c in cases
    ]


def main() -> None:
    """Parse the options, make and read the cases, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300, help="mutated files (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--jobs", type=int, default=2, help="children at a time (default: 2)")
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="seconds per file (default: 20)"
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=3072,
        help="address-space limit of each child in MiB (default: 3072)",
    )
    parser.add_argument("--worst", type=int, default=10, help="worst cases listed (default: 10)")
    parser.add_argument(
        "--no-extremes",
        action="store_true",
        help="skip the largest legal inputs (MAX_PIXELS images, tiny on disk)",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the mutated files in this folder"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / "fuzz_readers.json",
        help="where to write the results as JSON; the Markdown goes beside it as .md "
        "(default: %(default)s)",
    )
    args = parser.parse_args()
    if args.cases < 1 or args.jobs < 1:
        raise ValueError("--cases and --jobs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="nfdp_fuzz_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        seeds = make_seeds(folder)
        rng = random.Random(args.seed)
        cases = [make_case(i, seeds, folder, rng) for i in range(args.cases)]
        if not args.no_extremes:
            cases += make_extremes(len(cases), folder)
        base = baseline_mb()
        start = time.perf_counter()
        cases = run_cases(cases, args.jobs, args.timeout, args.memory_mb)
        wall = time.perf_counter() - start
    report(args, seeds, cases, base, wall)


def report(
    args: argparse.Namespace, seeds: list[Path], cases: list[Case], base: float, wall: float
) -> None:
    """Print the Markdown report and write it with the JSON."""
    from common import markdown_table, provenance, publish  # imports torch: after the children

    counts = Counter(c.outcome for c in cases)
    peak = max(c.peak_mb for c in cases)
    biggest = max(c.size for c in cases) / 1e6
    bad = [c for c in cases if c.outcome in ("unexpected exception", "crashed", "hung")]
    oom = [c for c in cases if c.outcome == "refused: out of memory"]
    targets = [
        ("no unexpected exception types", counts["unexpected exception"] == 0),
        ("no hangs", counts["hung"] == 0),
        ("no crashes", counts["crashed"] == 0),
        (f"peak memory under {PEAK_TARGET_MB:.0f} MB", peak < PEAK_TARGET_MB),
        ("no refusals caused by running out of memory", not oom),
    ]
    extremes = [c for c in cases if c.mutation == "largest legal"]
    if extremes:
        targets.append(("largest legal inputs read", all(c.outcome == "read" for c in extremes)))
    by_mutation = [
        [kind, *(sum(c.mutation == kind and c.outcome == o for c in cases) for o in OUTCOMES)]
        for kind in KINDS
    ]
    headers = ["case", "seed", "mutation", "MB", "outcome", "s", "peak MB", "error"]
    worst_memory = sorted(cases, key=lambda c: -c.peak_mb)[: args.worst]
    worst_time = sorted(cases, key=lambda c: -c.seconds)[: args.worst]
    causes = Counter(c.cause_type or "-" for c in cases if c.outcome.startswith("refused"))
    body = "\n\n".join(
        [
            f"{len(cases) - len(extremes)} mutated files from {len(seeds)} real seeds "
            f"({', '.join(s.name for s in seeds)}) and {len(extremes)} largest legal inputs; "
            f"largest input {biggest:.1f} MB. Each read "
            f"by `read_layer` in a forked child: {args.memory_mb} MiB address space, "
            f"{args.timeout:g} s; {args.jobs} at a time, {wall:.0f} s in all. Peak = child "
            f"ru_maxrss, including the {base:.0f} MB every child starts with.",
            markdown_table(
                ["outcome", "cases", "share", "median s", "max s", "max peak MB"],
                summary_rows(cases),
            ),
            "Targets: "
            + "; ".join(f"{name}: **{'met' if ok else 'MISSED'}**" for name, ok in targets),
            markdown_table(["mutation", *OUTCOMES], by_mutation),
            "Original exception types behind the refusals (the decoder error that the reader "
            "wrapped; `-` = refused by a check before decoding): "
            + ", ".join(f"{name} {n}" for name, n in causes.most_common()),
            "Unexpected exceptions, crashes and hangs:\n\n"
            + (markdown_table(headers, case_rows(bad)) if bad else "none"),
            "Highest peak memory:\n\n" + markdown_table(headers, case_rows(worst_memory)),
            "Slowest:\n\n" + markdown_table(headers, case_rows(worst_time)),
        ]
    )
    settings = {
        "cases": args.cases,
        "seed": args.seed,
        "jobs": args.jobs,
        "timeout_s": args.timeout,
        "memory_mb": args.memory_mb,
        "baseline_mb": base,
        "seeds": [s.name for s in seeds],
    }
    results = {
        "counts": dict(counts),
        "targets": {name: ok for name, ok in targets},
        "cases": [asdict(c) for c in cases],
    }
    publish(args.json, "Reader fuzzing", provenance(), settings, body, results)


if __name__ == "__main__":
    # benchmarks/common.py imports torch: it is imported only to report, after the children
    # ran, so that they start small.
    try:
        main()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
