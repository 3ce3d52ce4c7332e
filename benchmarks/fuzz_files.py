"""Hostile image files for ``fuzz_readers.py``: the real seed films, their mutations (byte
flips, truncations, header-field changes, random chunks) and the largest legal inputs.

Each maker writes a file and returns a :class:`Case` describing it; reading it is the
runner's job.
"""

from __future__ import annotations

import io
import math
import random
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file

from napari_nfdp.io.images import MAX_DECODED_BYTES, MAX_PIXELS

REPO = Path(__file__).resolve().parent.parent
DICOM_SEEDS = (
    "RG3_J2KI.dcm",  # CR, JPEG 2000 (lossy), MONOCHROME1
    "RG1_J2KI.dcm",  # CR, JPEG 2000 (lossy)
    "RG3_J2KR.dcm",  # CR, JPEG 2000 (lossless)
    "RG3_UNCR.dcm",  # CR, uncompressed, 6.2 MB
    "image_dfl.dcm",  # deflated explicit VR little endian
    "MR_small_RLE.dcm",  # RLE lossless
    "SC_rgb.dcm",  # RGB, uncompressed
    "JPEG-lossy.dcm",  # 12-bit JPEG extended (decoded through python-gdcm)
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
