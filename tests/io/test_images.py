"""Reading and writing raster images with napari_nfdp.io.images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nfdp.io.images import (
    IMAGE_SUFFIXES,
    MAX_DECODED_BYTES,
    MAX_PIXELS,
    MAX_SAMPLES,
    ImageReadError,
    check_declared_size,
    is_dicom,
    read_image,
    write_image,
)


@pytest.fixture
def grey16() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 65535, size=(40, 56), dtype=np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_16bit_round_trip_keeps_dtype(tmp_path, grey16, suffix):
    path = write_image(tmp_path / f"film{suffix}", grey16)
    image, meta = read_image(path)
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, grey16)
    assert meta["spacing"] is None


def test_8bit_png_bmp_and_jpeg(tmp_path):
    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    write_image(tmp_path / "a.png", grey)
    Image.fromarray(grey).save(tmp_path / "a.bmp")
    write_image(tmp_path / "a.jpg", grey, quality=95)
    for name in ("a.png", "a.bmp"):
        image, _ = read_image(tmp_path / name)
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, grey)
    jpeg, meta = read_image(tmp_path / "a.jpg")
    assert jpeg.dtype == np.uint8 and jpeg.shape == grey.shape
    assert np.abs(jpeg.astype(int) - grey).mean() < 2
    assert meta["format"] == "JPEG"


def test_colour_kept_as_channels(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, size=(33, 35, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    write_image(tmp_path / "rgb.png", rgb)
    write_image(tmp_path / "rgba.png", rgba)
    write_image(tmp_path / "rgb.tif", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png")[0], rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png")[0], rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif")[0], rgb)


def test_palette_and_bilevel_are_converted(tmp_path):
    Image.new("P", (40, 40), 3).save(tmp_path / "p.png")
    Image.new("1", (40, 40), 1).save(tmp_path / "b.png")
    assert read_image(tmp_path / "p.png")[0].shape == (40, 40, 4)
    bilevel = read_image(tmp_path / "b.png")[0]
    assert bilevel.dtype == np.uint8 and bilevel.shape == (40, 40) and bilevel.max() == 255


def test_corrupt_unknown_and_3d_files_raise_value_error(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"nonsense" * 10)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((5, 32, 32), np.uint16))
    for path in (broken, text, stack):
        with pytest.raises(ImageReadError, match=path.name):
            read_image(path)
    with pytest.raises(ImageReadError, match="stack.tif is a stack of 5 images"):
        read_image(stack)
    assert issubclass(ImageReadError, ValueError)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_write_rejects_unsupported_combinations(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "x.jpg", np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match="cannot write"):
        write_image(tmp_path / "x.gif", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="3-D"):
        write_image(tmp_path / "x.png", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="not a 2-D image"):
        write_image(tmp_path / "x.png", np.zeros(8, np.uint8))


def test_dicom_detected_by_suffix_or_preamble(tmp_path):
    from pydicom.data import get_testdata_file

    source = get_testdata_file("RG3_UNCR.dcm")
    no_suffix = tmp_path / "IM0001"
    no_suffix.write_bytes(Path(source).read_bytes())
    assert is_dicom(no_suffix) and is_dicom(tmp_path / "x.dcm")
    assert not is_dicom(tmp_path / "missing")
    image, meta = read_image(no_suffix)
    assert meta["format"] == "DICOM" and image.dtype == np.float32
    assert ".dcm" in IMAGE_SUFFIXES and ".png" in IMAGE_SUFFIXES


def test_declared_size_limit():
    assert MAX_PIXELS == 100_000_000 and MAX_SAMPLES == 4
    check_declared_size("long.png", 20_000, 5_000)  # exactly MAX_PIXELS
    check_declared_size("rgba.png", 100, 100, samples=4)
    with pytest.raises(ImageReadError, match=r"long.png: the file declares 20001 x 5000 pixels"):
        check_declared_size("long.png", 20_001, 5_000)
    with pytest.raises(ImageReadError, match="5 samples per pixel"):
        check_declared_size("odd.tif", 100, 100, samples=5)
    with pytest.raises(ImageReadError, match="empty image"):
        check_declared_size("empty.tif", 0, 100)
    with pytest.raises(ImageReadError, match="cine.dcm is a stack of 7 images"):
        check_declared_size("cine.dcm", 100, 100, frames=7)
    # Decoded bytes: 4 per pixel at MAX_PIXELS (16-bit grey or 8-bit RGBA), less for more.
    assert MAX_DECODED_BYTES == 4 * MAX_PIXELS
    check_declared_size("grey16.png", 10_000, 10_000, sample_bytes=2)
    check_declared_size("rgba8.tif", 10_000, 10_000, samples=4)
    check_declared_size("rgba16.tif", 7_071, 7_071, samples=4, sample_bytes=2)
    with pytest.raises(ImageReadError, match=r"rgba16.tif: .* 800 MB decoded"):
        check_declared_size("rgba16.tif", 10_000, 10_000, samples=4, sample_bytes=2)
    check_declared_size("double.dcm", 10_000, 5_000, sample_bytes=8)  # exactly the limit
    with pytest.raises(ImageReadError, match="double.dcm: .* 1 sample of 8 bytes, 400 MB decoded"):
        check_declared_size("double.dcm", 10_000, 5_001, sample_bytes=8)


def test_a_film_just_under_the_limit_is_read(tmp_path):
    """A real long film near MAX_PIXELS (zlib TIFF of 9000 x 11000) is not refused."""
    film = np.zeros((11_000, 9_000), np.uint8)
    film[::100] = 255
    path = tmp_path / "long.tif"
    tifffile.imwrite(path, film, compression="zlib")
    image, _ = read_image(path)
    assert image.shape == film.shape and image[100, 5] == 255
