"""DICOM radiographs -> float32 display arrays (bone bright) and their pixel spacing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

_DESCRIPTION_KEYWORDS = (
    "StudyDescription",
    "SeriesDescription",
    "BodyPartExamined",
    "ViewPosition",
)


def read_dicom(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one 2-D DICOM image as a float32 display array plus metadata.

    The modality LUT (rescale) and the VOI LUT or window are applied, and MONOCHROME1 images are
    inverted so that bone is bright. Colour images come back as (H, W, 3). Multi-frame and 3-D
    images raise ``ValueError``; so does anything pydicom cannot read or decode.

    Metadata: ``spacing`` (row, col) mm per pixel or None, ``modality``,
    ``photometric_interpretation``, ``description`` (study / series / body part, no patient data)
    and ``format`` ("DICOM").
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path.name}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError(f"{path.name}: the DICOM file holds no image (no pixel data)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(
            f"{path.name}: 3-D stacks are not supported; this DICOM has {frames} frames "
            "(open a single 2-D radiograph)"
        )
    try:
        raw = ds.pixel_array
    except Exception as exc:
        raise ValueError(f"{path.name}: the DICOM pixel data cannot be decoded ({exc})") from exc
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if raw.ndim != (2 if int(ds.get("SamplesPerPixel", 1)) == 1 else 3):
        raise ValueError(
            f"{path.name}: 3-D stacks are not supported; pixel array has shape {raw.shape}"
        )
    try:
        image = _display_array(raw, ds, photometric)
    except Exception as exc:
        raise ValueError(f"{path.name}: cannot apply the DICOM display transforms ({exc})") from exc
    metadata = {
        "format": "DICOM",
        "spacing": dicom_spacing(ds),
        "modality": str(ds.get("Modality", "")),
        "photometric_interpretation": photometric,
        "description": " / ".join(
            str(ds.get(keyword)) for keyword in _DESCRIPTION_KEYWORDS if ds.get(keyword)
        ),
    }
    return image, metadata


def _display_array(raw: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        return apply_color_lut(raw, ds).astype(np.float32)
    if raw.ndim == 3:
        return raw.astype(np.float32)
    image = apply_voi_lut(apply_modality_lut(raw, ds), ds).astype(np.float32)
    if photometric == "MONOCHROME1":
        image = np.float32(image.max() + image.min()) - image
    return image


def dicom_spacing(ds: Dataset) -> tuple[float, float] | None:
    """Pixel spacing (row, col) in mm of a dataset, or None when unknown.

    PixelSpacing is used when it is valid; otherwise ImagerPixelSpacing, divided by the
    EstimatedRadiographicMagnificationFactor when present. Zero or malformed values mean unknown.
    """
    spacing = _positive_pair(ds.get("PixelSpacing"))
    if spacing is not None:
        return spacing
    spacing = _positive_pair(ds.get("ImagerPixelSpacing"))
    if spacing is None:
        return None
    try:
        magnification = float(ds.get("EstimatedRadiographicMagnificationFactor") or 1.0)
    except (TypeError, ValueError):
        magnification = 1.0
    if not np.isfinite(magnification) or magnification <= 0:
        magnification = 1.0
    return (spacing[0] / magnification, spacing[1] / magnification)


def _positive_pair(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        return None
    return (row, col)
