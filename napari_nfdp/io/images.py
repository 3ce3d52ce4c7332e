"""Raster images (PNG, JPEG, BMP, TIFF, DICOM) -> numpy arrays, and PNG / JPEG / TIFF writing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from napari_nfdp.io.dicom import read_dicom

RASTER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
IMAGE_SUFFIXES: tuple[str, ...] = RASTER_SUFFIXES + DICOM_SUFFIXES
_TIFF_SUFFIXES = (".tif", ".tiff")
# Pillow modes that are converted on reading: everything else keeps its dtype and channels.
_CONVERT_MODES = {"1": "L", "P": "RGBA", "PA": "RGBA", "LA": "L", "CMYK": "RGB", "YCbCr": "RGB"}


def is_dicom(path: str | Path) -> bool:
    """True for a .dcm / .dicom file or any file with the DICOM "DICM" preamble."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            header = fh.read(132)
    except OSError:
        return False
    return len(header) == 132 and header[128:] == b"DICM"


def _natural_key(path: Path) -> tuple[list[Any], str]:
    """Sort by name, "film" < "film2" < "film10": digit runs compare as numbers."""
    parts = re.split(r"(\d+)", path.stem.lower())
    return [int(part) if part.isdigit() else part for part in parts], path.suffix.lower()


def _is_image_file(path: Path) -> bool:
    if path.name.startswith(".") or not path.is_file():
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES or (not path.suffix and is_dicom(path))


def list_images(folder: str | Path) -> list[Path]:
    """The radiographs of a folder in natural name order (hidden files and subfolders skipped;
    files without a suffix count when they are DICOM)."""
    return sorted((p for p in Path(folder).iterdir() if _is_image_file(p)), key=_natural_key)


def read_image(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an image file into an array and metadata.

    PNG / JPEG / BMP / TIFF keep their dtype (8 or 16 bit); colour stays (H, W, 3|4). DICOM goes
    through :func:`napari_nfdp.io.dicom.read_dicom` (float32 display array). Metadata always has
    ``spacing`` ((row, col) mm per pixel, or None) and ``format``. Unreadable files raise
    ``ValueError`` naming the file; a missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if is_dicom(path):
        image, metadata = read_dicom(path)
    elif path.suffix.lower() in _TIFF_SUFFIXES:
        image, metadata = _read_tiff(path)
    else:
        image, metadata = _read_pillow(path)
    if image.size == 0:
        raise ValueError(f"{path.name}: the image is empty (shape {image.shape})")
    return image, metadata


def _read_tiff(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        image = tifffile.imread(path)
    except Exception as exc:
        raise ValueError(f"{path.name}: not a readable TIFF file ({exc})") from exc
    image = np.squeeze(image)
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[-1] not in (3, 4):
        image = np.moveaxis(image, 0, -1)  # planar RGB
    _check_2d(path, image)
    return image, {"format": "TIFF", "spacing": None}


def _read_pillow(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with Image.open(path) as pil:
            if getattr(pil, "n_frames", 1) > 1:
                raise ValueError(
                    f"{path.name}: 3-D stacks are not supported; the file has {pil.n_frames} frames"
                )
            file_format = pil.format or path.suffix.lstrip(".").upper()
            if pil.mode in _CONVERT_MODES:
                pil = pil.convert(_CONVERT_MODES[pil.mode])
            image = np.asarray(pil)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path.name}: not a readable image file ({exc})") from exc
    if image.dtype.byteorder == ">":
        image = image.astype(image.dtype.newbyteorder("="))
    _check_2d(path, image)
    return image, {"format": file_format, "spacing": None}


def _check_2d(path: Path, image: np.ndarray) -> None:
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4)):
        return
    raise ValueError(
        f"{path.name}: 3-D stacks are not supported; expected a 2-D grey or colour image, "
        f"got shape {image.shape}"
    )


def write_image(path: str | Path, array: np.ndarray, *, quality: int = 95) -> Path:
    """Write a 2-D grey or (H, W, 3|4) colour array; the format follows the suffix.

    PNG takes uint8 or uint16 (16-bit grey), JPEG uint8 (``quality``), TIFF any dtype.
    """
    path = Path(path)
    array = np.asarray(array)
    _check_2d(path, array)
    suffix = path.suffix.lower()
    if suffix in _TIFF_SUFFIXES:
        tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")
        return path
    allowed = {".png": (np.uint8, np.uint16), ".jpg": (np.uint8,), ".jpeg": (np.uint8,)}
    if suffix not in allowed:
        raise ValueError(f"{path.name}: cannot write {suffix!r}; use .png, .jpg or .tif")
    if array.dtype not in allowed[suffix] or (array.dtype == np.uint16 and array.ndim == 3):
        raise ValueError(
            f"{path.name}: {suffix} needs {' or '.join(np.dtype(t).name for t in allowed[suffix])}"
            f" data{' (16-bit only for grey)' if suffix == '.png' else ''}, got {array.dtype}"
            f" with shape {array.shape}"
        )
    pil = Image.fromarray(np.ascontiguousarray(array))
    if suffix == ".png":
        pil.save(path, format="PNG")
    else:
        pil.save(path, format="JPEG", quality=quality)
    return path
