"""DICOM reading with the real CR radiographs of pydicom-data (MONOCHROME1, raw and JPEG 2000)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_nfdp.io.dicom import dicom_spacing, read_dicom


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
        with pytest.raises(ValueError, match=path.name):
            read_dicom(path)


def test_multiframe_is_rejected():
    with pytest.raises(ValueError, match="3-D stacks are not supported"):
        read_dicom(get_testdata_file("emri_small.dcm"))


def test_colour_dicom_kept_as_rgb():
    image, meta = read_dicom(get_testdata_file("SC_rgb.dcm"))
    assert image.shape[-1] == 3 and image.dtype == np.float32
    assert meta["photometric_interpretation"] == "RGB"
