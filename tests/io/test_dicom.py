"""DICOM reading with the real CR radiographs of pydicom-data (MONOCHROME1, raw and JPEG 2000)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_nfdp.io.dicom import dicom_spacing, read_dicom
from napari_nfdp.io.images import ImageReadError


@pytest.fixture(scope="module")
def chest() -> tuple[np.ndarray, dict]:
    return read_dicom(get_testdata_file("RG1_UNCR.dcm"))


@pytest.fixture(scope="module")
def ankle() -> tuple[np.ndarray, dict]:
    return read_dicom(get_testdata_file("RG3_UNCR.dcm"))


def _band(image: np.ndarray, col0: float, col1: float) -> float:
    h, w = image.shape
    return float(image[h // 4 : 3 * h // 4, int(col0 * w) : int(col1 * w)].mean())


def test_chest_polarity_mediastinum_brighter_than_lungs(chest):
    image, meta = chest
    assert image.dtype == np.float32 and image.ndim == 2
    assert meta["photometric_interpretation"] == "MONOCHROME1"
    assert meta["modality"] == "CR"
    mediastinum = _band(image, 0.45, 0.55)
    left_lung, right_lung = _band(image, 0.2, 0.3), _band(image, 0.7, 0.8)
    assert mediastinum > 1.2 * max(left_lung, right_lung)


def test_ankle_polarity_bone_brighter_than_air(ankle):
    image, meta = ankle
    bone = _band(image, 0.45, 0.55)  # tibia shaft
    air = _band(image, 0.29, 0.37)  # air beside the leg, inside the collimated field
    assert bone > 5 * air
    assert "tibia" in meta["description"]


@pytest.mark.parametrize(
    ("raw", "j2k"), [("RG1_UNCR.dcm", "RG1_J2KR.dcm"), ("RG3_UNCR.dcm", "RG3_J2KR.dcm")]
)
def test_jpeg2000_decodes_like_uncompressed(raw, j2k, chest, ankle):
    reference = chest[0] if raw.startswith("RG1") else ankle[0]
    decoded, meta = read_dicom(get_testdata_file(j2k))
    assert decoded.shape == reference.shape
    value_range = float(reference.max() - reference.min())
    assert np.abs(decoded - reference).mean() < 1e-3 * value_range
    assert meta["photometric_interpretation"] == "MONOCHROME1"


def test_zero_pixel_spacing_is_unknown(chest):
    assert chest[1]["spacing"] is None  # RG1 stores PixelSpacing 0\0


def test_spacing_rules():
    ds = pydicom.Dataset()
    assert dicom_spacing(ds) is None
    ds.ImagerPixelSpacing = [0.2, 0.25]
    assert dicom_spacing(ds) == pytest.approx((0.2, 0.25))
    ds.EstimatedRadiographicMagnificationFactor = 1.25
    assert dicom_spacing(ds) == pytest.approx((0.16, 0.2))
    ds.PixelSpacing = [0.0, 0.0]
    assert dicom_spacing(ds) == pytest.approx((0.16, 0.2))
    ds.PixelSpacing = [0.143, 0.15]
    assert dicom_spacing(ds) == pytest.approx((0.143, 0.15))


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_corrupt_dicom_raises_clear_value_error(tmp_path):
    data = Path(get_testdata_file("RG3_UNCR.dcm")).read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 50)
    for path in (truncated, garbage):
        with pytest.raises(ImageReadError, match=path.name):
            read_dicom(path)


def test_multiframe_is_rejected():
    with pytest.raises(ImageReadError, match="emri_small.dcm is a stack of 10 images"):
        read_dicom(get_testdata_file("emri_small.dcm"))


def test_deflated_dicom_reads_like_pydicom():
    path = get_testdata_file("image_dfl.dcm")
    image, meta = read_dicom(path)
    reference = pydicom.dcmread(path).pixel_array
    assert image.shape == reference.shape == (512, 512)
    np.testing.assert_array_equal(image, reference.astype(np.float32))
    assert meta["photometric_interpretation"] == "MONOCHROME2"


def test_jpeg_header_size_is_checked_before_decoding(tmp_path):
    """A JPEG DICOM whose frame header (SOF) declares 65535 x 65535 is refused from that
    header, whatever Rows / Columns say."""
    data = bytearray(Path(get_testdata_file("JPEG-lossy.dcm")).read_bytes())
    sof = data.index(b"\xff\xc1\x00\x0b")  # extended sequential frame header
    assert data[sof + 5 : sof + 9] == (1024).to_bytes(2, "big") + (256).to_bytes(2, "big")
    data[sof + 5 : sof + 9] = b"\xff\xff\xff\xff"
    path = tmp_path / "jpeg_bomb.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"jpeg_bomb.dcm: .*65535 x 65535 .*JPEG header"):
        read_dicom(path)


def test_dicom_without_pixel_data_is_refused():
    with pytest.raises(ImageReadError, match="rtplan.dcm: the DICOM file holds no image"):
        read_dicom(get_testdata_file("rtplan.dcm"))


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS:UserWarning")
def test_malformed_spacing_means_unknown(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    ds.PixelSpacing = [0.25, 0.25]
    path = tmp_path / "film.dcm"
    ds.save_as(path)
    assert read_dicom(path)[1]["spacing"] == (0.25, 0.25)
    data = path.read_bytes()
    assert data.count(b"0.25\\0.25") == 1
    path.write_bytes(data.replace(b"0.25\\0.25", b"0.2x\\0.25"))
    assert read_dicom(path)[1]["spacing"] is None


def test_colour_dicom_kept_as_rgb():
    path = get_testdata_file("SC_rgb.dcm")
    image, meta = read_dicom(path)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8  # no float32 copy
    np.testing.assert_array_equal(image, pydicom.dcmread(path).pixel_array)
    assert meta["photometric_interpretation"] == "RGB"


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS:UserWarning")
def test_malformed_window_is_ignored_not_fatal(tmp_path, caplog):
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    ds.WindowCenter, ds.WindowWidth = 550, 1024
    windowed = tmp_path / "windowed.dcm"
    ds.save_as(windowed)
    del ds.WindowCenter, ds.WindowWidth
    plain = tmp_path / "plain.dcm"
    ds.save_as(plain)
    data = windowed.read_bytes()
    center = b"(\x00P\x10DS\x06\x00550.0 "  # (0028,1050) WindowCenter
    assert data.count(center) == 1
    broken = tmp_path / "broken_window.dcm"
    broken.write_bytes(data.replace(center, center.replace(b"550.0", b"5x0.0")))
    image, _ = read_dicom(broken)
    np.testing.assert_array_equal(image, read_dicom(plain)[0])
    assert not np.array_equal(image, read_dicom(windowed)[0])
    assert "malformed DICOM window" in caplog.text
