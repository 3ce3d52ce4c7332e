"""Hostile files on disk: decompression bombs, lying headers, stacks, pipes and junk.

Every bad file must give :class:`ImageReadError` (a ValueError) naming the file, quickly and
without decoding what its header declares. Each hostile file has a sane twin, written the same
way, that reads: so a refusal is due to the hostile part, not to a broken writer.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

from napari_nfdp.io.images import (
    MAX_PIXELS,
    ImageReadError,
    is_dicom,
    list_images,
    read_image,
)

QUICK_S = 1.0  # a refusal reads headers only


@pytest.fixture(scope="module", autouse=True)
def _warm_decoders():
    """Import the lazily loaded decoder plugins once, so timings measure the refusal only."""
    read_image(get_testdata_file("RG3_J2KI.dcm"))


def _refused(path: Path, *fragments: str) -> ImageReadError:
    """Read ``path``; it must be refused quickly with ImageReadError naming the file and
    containing every fragment."""
    start = time.perf_counter()
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message, message
    assert elapsed < QUICK_S, f"{path.name} took {elapsed:.2f} s to refuse"
    return info.value


# --- real bombs, written by hand ----------------------------------------------------------------


def _zeros_deflate(total: int, chunk: int = 16 << 20) -> bytes:
    """A raw deflate stream of ``total`` zero bytes (a multiple of ``chunk``), made in
    milliseconds: one full-flushed block of zeros is self-contained, so it can be repeated."""
    assert total % chunk == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (total // chunk)


def _final_block() -> bytes:
    return zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def _zlib_zeros(total: int) -> bytes:
    """A complete zlib stream (header, blocks, Adler-32) of ``total`` zero bytes."""
    if total % (16 << 20):
        return zlib.compress(bytes(total))
    adler = (total % 65521) << 16 | 1  # Adler-32 of zeros: a stays 1, b counts the bytes
    return b"\x78\xda" + _zeros_deflate(total) + _final_block() + adler.to_bytes(4, "big")


def _tiff(
    path: Path,
    width: int,
    height: int,
    strip: bytes,
    *,
    samples: int = 1,
    photometric: int = 1,
    compression: int = 8,
) -> Path:
    """A little-endian one-strip TIFF, tag by tag (8-bit samples, chunky)."""
    tags: list[tuple[int, int, list[int]]] = [
        (256, 4, [width]),
        (257, 4, [height]),
        (258, 3, [8] * samples),
        (259, 3, [compression]),
        (262, 3, [photometric]),
        (273, 4, [0]),  # strip offset, patched below
        (277, 3, [samples]),
        (278, 4, [height]),
        (279, 4, [len(strip)]),
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    extra = bytearray()
    entries = bytearray()
    data_offset = 8 + ifd_size
    out_of_line = sum(len(v) * (2 if t == 3 else 4) for _, t, v in tags if len(v) * 2 > 4)
    strip_offset = data_offset + out_of_line
    for tag, kind, values in tags:
        if tag == 273:
            values = [strip_offset]
        packed = struct.pack(f"<{len(values)}{'H' if kind == 3 else 'I'}", *values)
        if len(packed) <= 4:
            field = packed.ljust(4, b"\0")
        else:
            field = struct.pack("<I", data_offset + len(extra))
            extra += packed
        entries += struct.pack("<HHI", tag, kind, len(values)) + field
    assert len(extra) == out_of_line
    header = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
    path.write_bytes(header + entries + b"\0\0\0\0" + extra + strip)
    return path


def test_zlib_tiff_bomb_is_refused_before_decoding(tmp_path):
    sane = _tiff(tmp_path / "sane.tif", 64, 64, zlib.compress(bytes(64 * 64)))
    image, _ = read_image(sane)
    assert image.shape == (64, 64) and image.dtype == np.uint8
    side = 40960  # 1.6 GB of zeros in a 1.6 MB file
    bomb = _tiff(tmp_path / "bomb.tif", side, side, _zlib_zeros(side * side))
    assert bomb.stat().st_size < 2_000_000
    _refused(bomb, "40960 x 40960", "megapixels")


def test_tiff_with_65535_samples_per_pixel_is_refused(tmp_path):
    sane = _tiff(tmp_path / "rgb.tif", 40, 40, zlib.compress(bytes(40 * 40 * 3)), samples=3,
                 photometric=2)  # fmt: skip
    assert read_image(sane)[0].shape == (40, 40, 3)
    path = _tiff(tmp_path / "samples.tif", 40, 40, zlib.compress(bytes(40 * 40)), samples=65535)
    _refused(path, "65535 samples per pixel")


def test_tiff_with_huge_tiles_is_refused(tmp_path):
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), tile=(32, 32), compression="zlib")
    assert read_image(path)[0].shape == (64, 64)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        for name in ("TileWidth", "TileLength"):
            tag = tags[name]
            fmt = "<H" if tag.dtype == tifffile.DATATYPE.SHORT else "<I"
            data[tag.valueoffset : tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, 65520)
    path.write_bytes(bytes(data))
    _refused(path, "tiles of 65520 x 65520 pixels")


def _png(path: Path, width: int, height: int) -> Path:
    """A real 64 x 64 PNG whose IHDR declares ``width`` x ``height`` (CRC recomputed)."""
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_png_with_huge_ihdr_is_refused(tmp_path):
    assert read_image(_png(tmp_path / "sane.png", 64, 64))[0].shape == (64, 64)
    # Over Pillow's own limit: Pillow's DecompressionBombError becomes ImageReadError.
    _refused(_png(tmp_path / "giant.png", 100_000, 100_000), "giant.png", "too many pixels")
    # Over MAX_PIXELS but under Pillow's error limit (Pillow would only warn and decode).
    _refused(_png(tmp_path / "large.png", 12_000, 9_000), "9000 x 12000", "megapixels")
    assert MAX_PIXELS < 9_000 * 12_000


def test_bmp_with_huge_header_is_refused(tmp_path):
    sane = tmp_path / "sane.bmp"
    Image.fromarray(np.full((40, 48), 7, np.uint8)).save(sane)
    assert read_image(sane)[0].shape == (40, 48)
    data = bytearray(sane.read_bytes())
    data[18:26] = struct.pack("<ii", 50_000, 50_000)
    bomb = tmp_path / "bomb.bmp"
    bomb.write_bytes(bytes(data))
    _refused(bomb, "too many pixels")


def _lying_lengths(tmp_path: Path) -> list[Path]:
    """Real files whose length fields claim about 4 GB: a PNG chunk, a TIFF strip, a DICOM
    file meta element."""
    png = bytearray(_png(tmp_path / "film.png", 64, 64).read_bytes())
    idat = png.index(b"IDAT")
    png[idat - 4 : idat] = struct.pack(">I", 0xFFFFFFF0)
    (tmp_path / "idat.png").write_bytes(bytes(png))
    _tiff(tmp_path / "strip.tif", 64, 64, zlib.compress(bytes(64 * 64)))
    tiff = bytearray((tmp_path / "strip.tif").read_bytes())
    entry = tiff.index(struct.pack("<HHI", 279, 4, 1))  # StripByteCounts
    tiff[entry + 8 : entry + 12] = struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "strip.tif").write_bytes(bytes(tiff))
    dicom = bytearray(Path(get_testdata_file("RG3_UNCR.dcm")).read_bytes())
    version = dicom.index(b"\x02\x00\x01\x00OB\x00\x00")  # FileMetaInformationVersion
    dicom[version + 8 : version + 12] = struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "meta.dcm").write_bytes(bytes(dicom))
    return [tmp_path / name for name in ("idat.png", "strip.tif", "meta.dcm")]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lying_length_fields_do_not_allocate_what_they_claim(tmp_path):
    for path in _lying_lengths(tmp_path):
        tracemalloc.start()
        try:
            read_image(path)
        except ImageReadError as error:
            assert path.name in str(error)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 300e6, f"{path.name}: {peak / 1e9:.1f} GB allocated"


# --- DICOM --------------------------------------------------------------------------------------


def _dicom_with(tmp_path: Path, name: str, **elements: object) -> Path:
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    path = tmp_path / name
    ds.save_as(path)
    return path


@pytest.mark.parametrize(
    ("elements", "fragments"),
    [
        ({"Rows": 65535, "Columns": 65535}, ["65535 x 65535", "megapixels"]),
        ({"NumberOfFrames": "1000000"}, ["stack of 1000000 images"]),
        ({"Rows": 65535, "Columns": 65535, "NumberOfFrames": "999999"}, ["65535 x 65535"]),
        ({"SamplesPerPixel": 300}, ["300 samples per pixel"]),
    ],
)
def test_dicom_with_huge_declared_size_is_refused(tmp_path, elements, fragments):
    path = _dicom_with(tmp_path, "huge.dcm", **elements)
    _refused(path, *fragments)


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS:UserWarning")
def test_dicom_non_numeric_element_is_named():
    # pydicom-data's own malformed file: NumberOfFrames holds '1A'.
    path = Path(get_testdata_file("badVR.dcm"))
    _refused(path, "the DICOM element NumberOfFrames holds '1A', not a number")


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS:UserWarning")
def test_non_numeric_frames_in_a_real_film_is_named(tmp_path):
    path = _dicom_with(tmp_path, "film.dcm", NumberOfFrames="1")
    data = bytearray(path.read_bytes())
    element = b"\x28\x00\x08\x00IS\x02\x001 "
    assert data.count(element) == 1
    data[data.index(element) + 8 : data.index(element) + 10] = b"1A"
    path.write_bytes(bytes(data))
    _refused(path, "film.dcm: the DICOM element NumberOfFrames holds '1A', not a number")


def _deflated_dicom(path: Path, rows: int, columns: int, pixel_bytes: int) -> Path:
    """A Deflated Explicit VR Little Endian file (from pydicom-data's real one) declaring
    ``rows`` x ``columns`` (8-bit grey) and holding ``pixel_bytes`` of deflated zeros as its
    pixel data."""
    ds = pydicom.dcmread(get_testdata_file("image_dfl.dcm"))
    assert ds.BitsAllocated == 8 and ds.SamplesPerPixel == 1
    del ds.PixelData
    ds.Rows, ds.Columns = rows, columns
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    header = body.getvalue() + b"\xe0\x7f\x10\x00OW\0\0" + struct.pack("<I", pixel_bytes)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream += _zeros_deflate(pixel_bytes) + _final_block()
    out = DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, ds.file_meta)
    path.write_bytes(out.getvalue() + stream)
    return path


def test_deflated_dicom_is_inflated_with_a_cap(tmp_path):
    sane = _deflated_dicom(tmp_path / "sane.dcm", 4096, 4096, 4096 * 4096)
    image, meta = read_image(sane)
    assert image.shape == (4096, 4096) and meta["format"] == "DICOM"
    # 2 GiB of pixel data declared as 32768 x 32768 in a 2 MB file: refused from the header.
    bomb = _deflated_dicom(tmp_path / "bomb.dcm", 32768, 32768, 2 << 30)
    assert bomb.stat().st_size < 3_000_000
    _refused(bomb, "32768 x 32768")
    # A small declared image whose data inflates to 2 GiB: inflation stops at the cap.
    liar = _deflated_dicom(tmp_path / "liar.dcm", 512, 512, 2 << 30)
    _refused(liar, "expands beyond", "512 x 512")


def test_jpeg2000_dicom_with_huge_siz_is_refused(tmp_path):
    data = bytearray(Path(get_testdata_file("RG3_J2KI.dcm")).read_bytes())
    soc = data.index(b"\xff\x4f\xff\x51")
    assert struct.unpack(">II", data[soc + 8 : soc + 16]) == (1760, 1760)  # Xsiz, Ysiz
    data[soc + 8 : soc + 16] = struct.pack(">II", 30000, 30000)
    path = tmp_path / "j2k_bomb.dcm"
    path.write_bytes(bytes(data))
    _refused(path, "30000 x 30000", "JPEG 2000 header")


# --- stacks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pages", [3, 4])
def test_grey_tiff_pages_are_a_stack_not_colour(tmp_path, pages):
    path = tmp_path / f"stack{pages}.tif"
    tifffile.imwrite(path, np.zeros((pages, 40, 40), np.uint16), photometric="minisblack")
    _refused(path, f"is a stack of {pages} images", "open one radiograph")


def test_grey_planes_stored_as_samples_are_a_stack(tmp_path):
    path = tmp_path / "planes.tif"
    tifffile.imwrite(
        path, np.zeros((3, 40, 40), np.uint8), photometric="minisblack", planarconfig="separate"
    )
    _refused(path, "is a stack of 3 images")


def test_planar_rgb_and_thumbnails_still_read(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, rgb, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(planar)[0], np.moveaxis(rgb, 0, -1))
    film = np.arange(60 * 40, dtype=np.uint16).reshape(60, 40)
    with_thumbnail = tmp_path / "thumb.tif"
    with tifffile.TiffWriter(with_thumbnail) as tif:
        tif.write(film, photometric="minisblack")
        tif.write(film[::4, ::4], photometric="minisblack", subfiletype=1)  # reduced image
    np.testing.assert_array_equal(read_image(with_thumbnail)[0], film)


def test_animated_png_is_a_stack(tmp_path):
    path = tmp_path / "cine.png"
    frames = [Image.fromarray(np.full((40, 40), v, np.uint8)) for v in (0, 100, 200)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    _refused(path, "is a stack of 3 images")


# --- pipes --------------------------------------------------------------------------------------


def _returns_within(function: Callable[[], object], fifo: Path, seconds: float = 5.0) -> object:
    """``function()``'s result, failing (not hanging) if it blocks on ``fifo`` for longer."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # let the blocked open() return
        os.close(fd)
        thread.join(seconds)
        pytest.fail(f"blocked for more than {seconds} s on the named pipe {fifo.name}")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_named_pipes_are_never_opened(tmp_path):
    write_image_like = tmp_path / "film.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(write_image_like)
    for name in ("IM0001", "pipe.png", "pipe.dcm"):
        os.mkfifo(tmp_path / name)
    plain = tmp_path / "IM0001"
    assert _returns_within(lambda: is_dicom(plain), plain) is False
    assert _returns_within(lambda: list_images(tmp_path), plain) == [write_image_like]
    for name in ("pipe.png", "pipe.dcm", "IM0001"):
        fifo = tmp_path / name
        with pytest.raises(ImageReadError, match=f"{name}: not a regular file"):
            _returns_within(lambda fifo=fifo: read_image(fifo), fifo)


# --- junk: one error type whatever the bytes ------------------------------------------------------


def _junk_files(tmp_path: Path) -> list[Path]:
    png = Path(_png(tmp_path / "ok.png", 64, 64)).read_bytes()
    tiff = _tiff(tmp_path / "ok.tif", 64, 64, zlib.compress(bytes(64 * 64))).read_bytes()
    dicom = Path(get_testdata_file("RG3_UNCR.dcm")).read_bytes()[:4000]
    files = {
        "empty.png": b"",
        "empty.tif": b"",
        "empty.dcm": b"",
        "text.bmp": b"BM not really",
        "truncated.png": png[: len(png) // 2],
        "bad_crc.png": png[:30] + bytes([png[30] ^ 0xFF]) + png[31:],
        "ifd_beyond_end.tif": b"II*\0" + struct.pack("<I", 10**9),
        "ifd_loop.tif": b"II*\0" + struct.pack("<I", 8) + b"\0\0" + struct.pack("<I", 8),
        "big_endian_junk.tif": b"MM\0*" + os.urandom(64),
        "truncated_strip.tif": tiff[:-20],
        "preamble_only.dcm": b"\0" * 128 + b"DICM",
        "garbage_after_preamble": b"\0" * 128 + b"DICM" + b"\xff" * 300,
        "header_only.dcm": dicom,
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return paths


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_junk_gives_only_image_read_error(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="napari_nfdp.io")
    for path in _junk_files(tmp_path):
        error = _refused(path)
        assert isinstance(error, ValueError)
    # The original decoder exceptions are kept for debugging: chained and logged.
    assert any(record.exc_info for record in caplog.records)


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError):
        read_image(tmp_path)
