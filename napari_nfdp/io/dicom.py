"""DICOM radiographs -> display arrays (grey: float32, bone bright) and their pixel spacing.

Files are read defensively: the header is read first (without the pixel data) and the declared
size is checked against :data:`napari_nfdp.io.images.MAX_PIXELS` before anything is decoded or
inflated; for JPEG 2000 and JPEG pixel data the size declared inside the codestream is checked
too, and deflated files are inflated with a cap. Every problem raises
:class:`napari_nfdp.io.images.ImageReadError` naming the file. Which compressed transfer
syntaxes decode: :mod:`napari_nfdp.io.dicom_codecs`.
"""

from __future__ import annotations

import logging
import os
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import generate_fragments
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from napari_nfdp.io import dicom_codecs
from napari_nfdp.io.dicom_meta import MEDIA_DIRECTORY_STORAGE, scan_file_meta
from napari_nfdp.io.images import BoundedReader, ImageReadError, check_declared_size

logger = logging.getLogger(__name__)
dicom_codecs.register()

#: Where a film's pixel spacing came from (the reader's ``spacing_source``; None: no spacing).
SPACING_FROM_PIXEL_SPACING = "PixelSpacing"
SPACING_FROM_IMAGER_MAGNIFIED = (
    "ImagerPixelSpacing corrected by EstimatedRadiographicMagnificationFactor"
)
SPACING_FROM_IMAGER = "ImagerPixelSpacing"
SPACING_FROM_SCANNED = "NominalScannedPixelSpacing"

_DESCRIPTION_KEYWORDS = (
    "StudyDescription",
    "SeriesDescription",
    "BodyPartExamined",
    "ViewPosition",
)
_PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}  # Float / DoubleFloat / PixelData
# Inflating a deflated file: the header before the pixel data may take at most this much, and
# the whole dataset the declared pixel bytes plus this much.
_DEFLATE_HEADER_CAP = 16 << 20
_DEFLATE_SLACK = 16 << 20
# Pixels per band of rows when applying the display LUTs.
_DISPLAY_BAND_PIXELS = 1 << 22
# How much of the start of a file is scanned for the file meta group (transfer syntax).
_META_SCAN = 1 << 16
# How much of the encapsulated pixel data is searched for the codestream header.
_CODESTREAM_SEARCH = 1 << 20
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def read_dicom(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one 2-D DICOM image as a display array plus metadata.

    Grey images: the modality LUT (rescale) and the VOI LUT or window are applied (a malformed
    window is ignored with a warning), MONOCHROME1 images are inverted so that bone is bright,
    and the result is float32. Colour images (RGB, YBR, palette) come back as (H, W, 3) in their
    decoded integer dtype, as PNG / TIFF colour does (a float32 copy of a large colour film
    would take 12 bytes per pixel). Declared sizes over
    ``MAX_PIXELS``, multi-frame and 3-D images, and anything pydicom cannot read or decode raise
    :class:`~napari_nfdp.io.images.ImageReadError` (a ``ValueError``) naming the file.

    Metadata: ``spacing`` (row, col) mm per pixel or None, ``spacing_source`` (the element it
    came from, see :func:`spacing_and_source`), ``modality``,
    ``photometric_interpretation``, ``description`` (study / series / body part, no patient data),
    ``image_position`` / ``image_orientation`` (IPP / IOP, or None) and ``format`` ("DICOM").
    """
    path = Path(path)
    name = path.name
    ds = _read_checked(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(f"{name}: the DICOM file holds no image (no pixel data)")
    transfer_syntax = _transfer_syntax(ds)
    dicom_codecs.check_decodable(name, transfer_syntax)
    _check_codestream(name, ds)
    samples = _int_element(name, ds, "SamplesPerPixel", 1)
    try:
        raw = ds.pixel_array
    except MemoryError:
        raise
    except Exception as exc:
        logger.debug("pixel data of %s cannot be decoded", path, exc_info=True)
        syntax = f" ({pydicom.uid.UID(transfer_syntax).name})" if transfer_syntax else ""
        raise ImageReadError(
            f"{name}: the DICOM pixel data{syntax} cannot be decoded ({_first_line(exc)})"
        ) from exc
    photometric = str(_safe_get(ds, "PhotometricInterpretation") or "MONOCHROME2").upper()
    if raw.ndim != (2 if samples == 1 else 3):
        raise ImageReadError(
            f"{name}: 3-D stacks are not supported; pixel array has shape {raw.shape}"
        )
    try:
        image = _display_array(raw, ds, photometric)
    except MemoryError:
        raise
    except Exception as exc:
        logger.debug("display transforms of %s failed", path, exc_info=True)
        raise ImageReadError(
            f"{name}: cannot apply the DICOM display transforms ({_first_line(exc)})"
        ) from exc
    spacing, spacing_source = spacing_and_source(ds)
    metadata = {
        "format": "DICOM",
        "spacing": spacing,
        "spacing_source": spacing_source,
        **dicom_geometry(ds),
        "modality": str(_safe_get(ds, "Modality") or ""),
        "photometric_interpretation": photometric,
        "description": " / ".join(
            str(value)
            for value in (_safe_get(ds, keyword) for keyword in _DESCRIPTION_KEYWORDS)
            if value
        ),
    }
    return image, metadata


def _first_line(exc: BaseException) -> str:
    """An exception's message on one line, shortened (pydicom lists each plugin's failure on
    its own line)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if len(text) > 300:
        text = text[:300] + "..."
    return text or type(exc).__name__


def _read_checked(path: Path) -> Dataset:
    """The whole dataset, read only after its header passed :func:`_check_header`."""
    name = path.name
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            meta = scan_file_meta(handle.read(min(size, _META_SCAN)))
            if meta.transfer_syntax == DeflatedExplicitVRLittleEndian:
                handle.seek(0)
                return _read_deflated(path, handle.read(), meta.dataset_start)
            handle.seek(0)
            reader = cast(BinaryIO, BoundedReader(handle, size, allow_read_all=False))
            header = pydicom.dcmread(reader, stop_before_pixels=True)
            if _media_storage_class(header) == MEDIA_DIRECTORY_STORAGE:
                raise ImageReadError(
                    f"{name} is a DICOMDIR (the index of a DICOM medium), not an image; open "
                    "the films it lists, or their folder"
                )
            _check_header(name, header)
            handle.seek(0)
            return pydicom.dcmread(reader)
    except ImageReadError as exc:
        if exc.args and str(exc).startswith(name):
            raise
        raise ImageReadError(f"{name}: not a readable DICOM file ({exc})") from exc
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as exc:
        logger.debug("pydicom cannot read %s", path, exc_info=True)
        raise ImageReadError(f"{name}: not a readable DICOM file ({_first_line(exc)})") from exc


def _int_element(name: str, ds: Dataset, keyword: str, default: int | None = None) -> int:
    """An integer element of ``ds``; a missing one gives ``default`` (an error when None), and
    a value that is not a whole number raises ImageReadError naming the file and the element."""
    try:
        value = ds.get(keyword)
    except Exception as exc:  # pydicom converts raw values on access
        raise ImageReadError(
            f"{name}: the DICOM element {keyword} cannot be read ({_first_line(exc)})"
        ) from exc
    if value is None or value == "":
        if default is None:
            raise ImageReadError(f"{name}: the DICOM file has no {keyword} element")
        return default
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        try:
            number = float(str(value).strip())
        except (TypeError, ValueError):
            number = float("nan")
        if not (np.isfinite(number) and number == int(number)):
            raise ImageReadError(
                f"{name}: the DICOM element {keyword} holds {str(value)[:40]!r}, not a number"
            ) from None
        number = int(number)
    return number


def _check_header(name: str, ds: Dataset) -> int:
    """Check the declared image size of a dataset (read without its pixel data); returns the
    declared number of pixel bytes."""
    if "Rows" not in ds and "Columns" not in ds:
        raise ImageReadError(f"{name}: the DICOM file holds no image (no Rows / Columns)")
    rows = _int_element(name, ds, "Rows")
    columns = _int_element(name, ds, "Columns")
    frames = _int_element(name, ds, "NumberOfFrames", 1)
    samples = _int_element(name, ds, "SamplesPerPixel", 1)
    bits = _int_element(name, ds, "BitsAllocated", 16)
    if not 1 <= bits <= 64:
        raise ImageReadError(f"{name}: the DICOM element BitsAllocated holds {bits}, not 1 to 64")
    check_declared_size(
        name,
        rows,
        columns,
        samples=samples,
        frames=max(frames, 1),
        sample_bytes=-(-bits // 8),
        what="the DICOM header",
    )
    return rows * columns * samples * -(-bits // 8)


def _read_deflated(path: Path, raw: bytes, dataset_start: int) -> FileDataset:
    """Read a Deflated Explicit VR Little Endian file, inflating it with a cap: the header
    first (up to the pixel data), then no more than its declared pixel bytes."""
    name = path.name
    meta = pydicom.dcmread(BytesIO(raw[:dataset_start])).file_meta
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head = inflater.decompress(raw[dataset_start:], _DEFLATE_HEADER_CAP)
    reached_pixels = []

    def at_pixels(tag: int, vr: str | None, length: int) -> bool:
        if tag in _PIXEL_TAGS:
            reached_pixels.append(tag)
            return True
        return False

    header = read_dataset(DicomBytesIO(head), False, True, stop_when=at_pixels)
    if not reached_pixels and len(head) >= _DEFLATE_HEADER_CAP:
        raise ImageReadError(
            f"{name}: the deflated DICOM header is over {_DEFLATE_HEADER_CAP >> 20} MB; "
            "refusing to inflate it further"
        )
    pixel_bytes = _check_header(name, header)
    cap = len(head) + pixel_bytes + _DEFLATE_SLACK
    inflated = bytearray(head)
    del head
    while not inflater.eof:
        part = inflater.decompress(inflater.unconsumed_tail, cap - len(inflated) + 1)
        if not part and not inflater.unconsumed_tail:
            break  # truncated stream: pydicom says what is missing
        inflated += part
        if len(inflated) > cap:
            raise ImageReadError(
                f"{name}: the deflated DICOM data expands beyond the {cap >> 20} MB its header "
                f"declares ({header.get('Rows')} x {header.get('Columns')} pixels); "
                "refusing to inflate it further"
            )
    dataset = read_dataset(DicomBytesIO(inflated), False, True)
    return FileDataset(str(path), dataset, raw[:128], meta, False, True)


def _check_codestream(name: str, ds: Dataset) -> None:
    """Check the size declared inside JPEG 2000 / JPEG / JPEG-LS pixel data before decoding:
    the decoders allocate what the codestream says, whatever Rows and Columns say."""
    transfer_syntax = _transfer_syntax(ds)
    is_j2k = transfer_syntax in JPEG2000TransferSyntaxes
    is_jpeg = transfer_syntax in JPEGTransferSyntaxes or transfer_syntax in JPEGLSTransferSyntaxes
    if not (is_j2k or is_jpeg) or "PixelData" not in ds:
        return
    start = _first_fragments(name, ds.PixelData)
    kind = "JPEG 2000" if is_j2k else "JPEG"
    declared = _j2k_size(start) if is_j2k else _jpeg_size(start)
    if declared is None:
        raise ImageReadError(
            f"{name}: the {kind} pixel data has no readable image header; cannot decode it"
        )
    height, width, components = declared
    rows, columns = _int_element(name, ds, "Rows"), _int_element(name, ds, "Columns")
    if height == 0 and is_jpeg:  # height defined later (DNL marker): use the DICOM header's
        height = rows
    check_declared_size(name, height, width, samples=components, what=f"the {kind} header")
    if (height, width) != (rows, columns):  # the decoded image could not be used anyway
        raise ImageReadError(
            f"{name}: the {kind} header declares {height} x {width} pixels but the DICOM "
            f"header {rows} x {columns}; the pixel data does not belong to this header"
        )


def _transfer_syntax(ds: Dataset) -> str | None:
    """The transfer syntax UID the file meta names, or None."""
    value = _safe_get(getattr(ds, "file_meta", Dataset()), "TransferSyntaxUID")
    return str(value) if value else None


def _media_storage_class(ds: Dataset) -> str | None:
    """The Media Storage SOP Class UID the file meta names (a DICOMDIR's: 1.2.840.10008.1.3.10)."""
    value = _safe_get(getattr(ds, "file_meta", Dataset()), "MediaStorageSOPClassUID")
    return str(value) if value else None


def _first_fragments(name: str, pixel_data: bytes) -> bytes:
    """The start of the first frame of encapsulated pixel data (basic offset table skipped)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for index, fragment in enumerate(generate_fragments(pixel_data)):
            if index == 0:
                continue  # the basic offset table
            chunks.append(fragment)
            size += len(fragment)
            if size >= _CODESTREAM_SEARCH:
                break
    except Exception as exc:
        raise ImageReadError(
            f"{name}: the encapsulated DICOM pixel data is malformed ({_first_line(exc)})"
        ) from exc
    return b"".join(chunks)[:_CODESTREAM_SEARCH]


def _j2k_size(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from the SIZ marker segment of a JPEG 2000 codestream
    (raw or inside a JP2 box), or None when there is none."""
    start = data.find(b"\xff\x4f\xff\x51")  # SOC followed by SIZ
    if start < 0 or len(data) < start + 4 + 38:
        return None
    siz = data[start + 4 :]
    x_size, y_size = int.from_bytes(siz[4:8], "big"), int.from_bytes(siz[8:12], "big")
    x_offset, y_offset = int.from_bytes(siz[12:16], "big"), int.from_bytes(siz[16:20], "big")
    components = int.from_bytes(siz[36:38], "big")
    return max(y_size - y_offset, 0), max(x_size - x_offset, 0), components


def _jpeg_size(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from the SOF marker of a JPEG / JPEG-LS stream, or None."""
    if not data.startswith(b"\xff\xd8"):
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        if marker in _JPEG_SOF:
            segment = data[position + 4 : position + 10]
            if len(segment) < 6:
                return None
            height = int.from_bytes(segment[1:3], "big")
            width = int.from_bytes(segment[3:5], "big")
            return height, width, segment[5]
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def _display_array(raw: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        return apply_color_lut(raw, ds)
    if raw.ndim == 3:
        return raw
    # The LUTs act pixel by pixel: apply them a band of rows at a time, so that pydicom's
    # float64 intermediates stay small on a large film.
    image = np.empty(raw.shape, dtype=np.float32)
    step = max(1, _DISPLAY_BAND_PIXELS // max(1, raw.shape[1]))
    use_voi = True
    for top in range(0, raw.shape[0], step):
        band = apply_modality_lut(raw[top : top + step], ds)
        if use_voi:
            try:
                band = apply_voi_lut(band, ds)
            except (TypeError, ValueError, KeyError, IndexError) as error:
                if top > 0:
                    raise
                # A malformed window or VOI LUT should not make the film unreadable.
                logger.warning("ignoring the malformed DICOM window / VOI LUT: %s", error)
                use_voi = False
        image[top : top + step] = band
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(image.max() + image.min()), image, out=image)
    return image


def dicom_spacing(ds: Dataset) -> tuple[float, float] | None:
    """Pixel spacing (row, col) in mm of a dataset, or None when unknown (see
    :func:`spacing_and_source`)."""
    return spacing_and_source(ds)[0]


def spacing_and_source(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """Pixel spacing (row, col) in mm of a dataset and the element it came from.

    The first valid one of: PixelSpacing; ImagerPixelSpacing divided by a valid
    EstimatedRadiographicMagnificationFactor (the spacing at the detector, brought to the
    patient), else ImagerPixelSpacing as it is; NominalScannedPixelSpacing (a digitised film).
    Zero or malformed values mean unknown: (None, None) when none is valid.
    """
    spacing = _positive_pair(_safe_get(ds, "PixelSpacing"))
    if spacing is not None:
        return spacing, SPACING_FROM_PIXEL_SPACING
    spacing = _positive_pair(_safe_get(ds, "ImagerPixelSpacing"))
    if spacing is not None:
        magnification = _magnification(ds)
        if magnification is None:
            return spacing, SPACING_FROM_IMAGER
        corrected = (spacing[0] / magnification, spacing[1] / magnification)
        return corrected, SPACING_FROM_IMAGER_MAGNIFIED
    spacing = _positive_pair(_safe_get(ds, "NominalScannedPixelSpacing"))
    if spacing is not None:
        return spacing, SPACING_FROM_SCANNED
    return None, None


def _magnification(ds: Dataset) -> float | None:
    """EstimatedRadiographicMagnificationFactor when it is a positive finite number."""
    value = _safe_get(ds, "EstimatedRadiographicMagnificationFactor")
    if value is None or value == "":
        return None
    try:
        magnification = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return magnification if np.isfinite(magnification) and magnification > 0 else None


def dicom_geometry(ds: Dataset) -> dict[str, tuple[float, ...] | None]:
    """``image_position`` (ImagePositionPatient, 3 numbers) and ``image_orientation``
    (ImageOrientationPatient, 6) of a dataset; None when missing or malformed."""
    return {
        "image_position": _finite_numbers(_safe_get(ds, "ImagePositionPatient"), 3),
        "image_orientation": _finite_numbers(_safe_get(ds, "ImageOrientationPatient"), 6),
    }


def _finite_numbers(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    return numbers if len(numbers) == count and np.isfinite(numbers).all() else None


def _safe_get(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)``, or None when the stored value cannot be converted."""
    try:
        return ds.get(keyword)
    except Exception:  # a malformed value means "unknown" here
        logger.debug("DICOM element %s cannot be read", keyword, exc_info=True)
        return None


def _positive_pair(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        return None
    return (row, col)
