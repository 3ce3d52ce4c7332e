"""Raster images (PNG, JPEG, BMP, TIFF, DICOM) -> numpy arrays, and PNG / JPEG / TIFF writing.

Reading is defensive: every file is treated as possibly hostile. The size an image *declares*
(TIFF tags, PNG / BMP / JPEG headers, DICOM Rows / Columns / NumberOfFrames / SamplesPerPixel,
JPEG 2000 and JPEG codestream headers) is checked against :data:`MAX_PIXELS` before anything is
decoded, and every problem with a file's content comes out as one error type,
:class:`ImageReadError`, whose message names the file.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import tifffile
from PIL import Image

from napari_nfdp.io.dicom_meta import has_preamble, is_dicomdir, read_head

logger = logging.getLogger(__name__)

RASTER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
IMAGE_SUFFIXES: tuple[str, ...] = RASTER_SUFFIXES + DICOM_SUFFIXES
_TIFF_SUFFIXES = (".tif", ".tiff")
# Pillow modes that are converted on reading: everything else keeps its dtype and channels.
_CONVERT_MODES = {"1": "L", "P": "RGBA", "PA": "RGBA", "LA": "L", "CMYK": "RGB", "YCbCr": "RGB"}

#: The largest image, in pixels (rows x columns of one frame), that is decoded. Sized for real
#: stitched long films: a full-spine film of 43 x 129 cm at 0.1 mm per pixel has 55 megapixels;
#: a grey 16-bit film of MAX_PIXELS decodes to 200 MB. Larger declared sizes are refused before
#: decoding (no decompression bombs), as are more than MAX_SAMPLES samples per pixel, more than
#: one frame, and more than MAX_DECODED_BYTES of decoded samples.
MAX_PIXELS = 100_000_000
#: The most samples (channels) per pixel: grey, grey + alpha, RGB or RGBA.
MAX_SAMPLES = 4
#: The most decoded bytes (rows x columns x samples x bytes per sample), derived from
#: MAX_PIXELS: 4 bytes per pixel (a MAX_PIXELS film in 16-bit grey or 8-bit RGBA; 16-bit RGBA up
#: to a quarter of it). Keeps the peak memory of reading any file near 1 GB.
MAX_DECODED_BYTES = 4 * MAX_PIXELS
# How many TIFF pages are looked at to tell a stack from a film with thumbnails.
_MAX_PAGES_INSPECTED = 64
# Exceptions that signal a programming error rather than a bad file: logged loudly.
_BUG_TYPES = (AttributeError, NameError, AssertionError, ImportError)


class ImageReadError(ValueError):
    """A file that cannot be read as one 2-D radiograph; the message names the file and why.

    Raised for anything wrong with a file's content: not an image, corrupt or truncated data,
    a declared size over :data:`MAX_PIXELS`, a stack of images, or a file that is not a
    regular file (pipe, device). A missing path raises ``FileNotFoundError`` and a folder
    ``IsADirectoryError`` instead.
    """


class BoundedReader:
    """A binary file whose ``read(n)`` never asks for more than what is left of the file, so
    that a corrupt length field of 4 GB does not allocate 4 GB before finding the file short.

    Other attributes are the wrapped handle's. With ``allow_read_all=False``, ``read()`` of
    everything raises ImageReadError (pydicom does that only to inflate a deflated file, which
    must go through the capped inflation of :mod:`napari_nfdp.io.dicom` instead).
    """

    def __init__(self, handle: BinaryIO, size: int, *, allow_read_all: bool = True) -> None:
        self._handle = handle
        self._size = size
        self._allow_read_all = allow_read_all

    def read(self, size: int | None = -1) -> bytes:
        """At most ``size`` bytes, and never more than what is left."""
        if size is None or size < 0:
            if not self._allow_read_all:
                raise ImageReadError("unexpected deflated data")
            return self._handle.read()
        return self._handle.read(min(size, max(0, self._size - self._handle.tell())))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def check_declared_size(
    name: str,
    height: int,
    width: int,
    *,
    samples: int = 1,
    frames: int = 1,
    sample_bytes: int = 1,
    what: str = "",
) -> None:
    """Refuse a declared image size before decoding it.

    ``height`` x ``width`` must be at most :data:`MAX_PIXELS`, ``samples`` between 1 and
    :data:`MAX_SAMPLES`, the decoded size (with ``sample_bytes`` bytes per sample) at most
    :data:`MAX_DECODED_BYTES`, and ``frames`` 1 (more is a stack). ``what`` says where the size
    was declared ("the TIFF tags", "the JPEG 2000 header"...). Raises :class:`ImageReadError`
    naming ``name`` and the declared size.
    """
    where = f" ({what})" if what else ""
    size = f"{height} x {width} pixels"
    if height < 1 or width < 1:
        raise ImageReadError(f"{name}: the file declares an empty image of {size}{where}")
    if height * width > MAX_PIXELS:
        raise ImageReadError(
            f"{name}: the file declares {size}{where}, {height * width / 1e6:.0f} megapixels; "
            f"images over {MAX_PIXELS / 1e6:.0f} megapixels are not decoded"
        )
    if not 1 <= samples <= MAX_SAMPLES:
        raise ImageReadError(
            f"{name}: the file declares {samples} samples per pixel{where} for {size}; "
            f"a radiograph has 1 to {MAX_SAMPLES} (grey, grey + alpha, RGB, RGBA)"
        )
    decoded = height * width * samples * max(sample_bytes, 1)
    if decoded > MAX_DECODED_BYTES:
        raise ImageReadError(
            f"{name}: the file declares {size} x {samples} sample{'s' * (samples != 1)} of "
            f"{sample_bytes} byte{'s' * (sample_bytes != 1)}"
            f"{where}, {decoded / 1e6:.0f} MB decoded; images over "
            f"{MAX_DECODED_BYTES / 1e6:.0f} MB decoded are not read"
        )
    if frames > 1:
        raise _stack_error(name, frames)


def _stack_error(name: str, count: int | str) -> ImageReadError:
    """The error for a file holding several images (pages, frames, planes)."""
    return ImageReadError(
        f"{name} is a stack of {count} images (3-D stacks are not supported); open one radiograph"
    )


def is_regular_file(path: str | Path) -> bool:
    """True for an existing regular file (following links); False for folders, pipes, devices,
    sockets and missing paths. Never opens the path."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def is_dicom(path: str | Path) -> bool:
    """True for a .dcm / .dicom file or a regular file with the DICOM "DICM" preamble.

    Only regular files are opened (non-blocking, so a pipe swapped in cannot hang the caller).
    """
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    return has_preamble(read_head(path, 132))


def _natural_key(path: Path) -> tuple[list[Any], str]:
    """Sort by name, "film" < "film2" < "film10": digit runs compare as numbers."""
    parts = re.split(r"(\d+)", path.stem.lower())
    return [int(part) if part.isdigit() else part for part in parts], path.suffix.lower()


def is_image_file(path: str | Path) -> bool:
    """True for a regular file that is a radiograph by its suffix, or a file without a suffix
    (``IM0001``) that is DICOM; never a DICOMDIR (the index of a DICOM medium) nor a hidden file.

    Only files without a suffix are opened (their first bytes, non-blocking)."""
    path = Path(path)
    if path.name.startswith(".") or not is_regular_file(path):
        return False
    if path.suffix:
        return path.suffix.lower() in IMAGE_SUFFIXES
    head = read_head(path)
    return has_preamble(head) and not is_dicomdir(path, head)


def list_images(folder: str | Path) -> list[Path]:
    """The radiographs of a folder in natural name order (hidden files, subfolders, pipes,
    devices and DICOMDIR skipped; files without a suffix count when they are DICOM)."""
    return sorted((p for p in Path(folder).iterdir() if is_image_file(p)), key=_natural_key)


def read_image(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an image file into an array and metadata.

    PNG / JPEG / BMP / TIFF keep their dtype (8 or 16 bit); colour stays (H, W, 3|4). DICOM goes
    through :func:`napari_nfdp.io.dicom.read_dicom` (grey: float32 display array; colour: its
    integer dtype). Metadata always has
    ``spacing`` ((row, col) mm per pixel, or None) and ``format``; DICOM also
    ``spacing_source`` (where the spacing came from, see
    :func:`napari_nfdp.io.dicom.spacing_and_source`).

    Whatever the bytes, a bad file raises :class:`ImageReadError` (a ``ValueError``) naming the
    file: declared sizes over :data:`MAX_PIXELS` are refused before decoding, stacks are refused,
    and decoder failures of any type are wrapped (the original is logged at debug level). A
    missing path raises ``FileNotFoundError``, a folder ``IsADirectoryError``.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except OSError as exc:
        raise ImageReadError(f"{path.name}: cannot access the file ({exc.strerror})") from exc
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a folder, not an image file")
    if not stat.S_ISREG(mode):
        raise ImageReadError(
            f"{path.name}: not a regular file (a pipe, socket or device); open an image file"
        )
    try:
        image, metadata = _read_any(path)
    except (ImageReadError, FileNotFoundError, IsADirectoryError):
        raise
    except MemoryError as exc:
        logger.debug("out of memory reading %s", path, exc_info=True)
        raise ImageReadError(f"{path.name}: not enough memory to read this image") from exc
    except Exception as exc:
        log = logger.exception if isinstance(exc, _BUG_TYPES) else logger.debug
        log("reading %s failed with %s", path, type(exc).__name__, exc_info=True)
        raise ImageReadError(f"{path.name}: not a readable image file ({_describe(exc)})") from exc
    if image.size == 0:
        raise ImageReadError(f"{path.name}: the image is empty (shape {image.shape})")
    return image, metadata


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line, shortened."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_any(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    if is_dicom(path):
        from napari_nfdp.io.dicom import read_dicom  # dicom.py imports this module

        return read_dicom(path)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return _read_tiff(path)
    return _read_pillow(path)


def _read_tiff(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with path.open("rb") as handle:
        reader = BoundedReader(handle, os.fstat(handle.fileno()).st_size)
        return _read_tiff_file(path, cast(BinaryIO, reader))


def _read_tiff_file(path: Path, reader: BinaryIO) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        tif = tifffile.TiffFile(reader)
    except Exception as exc:
        logger.debug("tifffile cannot open %s", path, exc_info=True)
        raise ImageReadError(f"{path.name}: not a readable TIFF file ({_describe(exc)})") from exc
    with tif:
        page = tif.pages.first
        what = "the TIFF tags"

        def number(attribute: str) -> int:
            return _tiff_number(path.name, page, attribute)

        check_declared_size(
            path.name,
            number("imagelength"),
            number("imagewidth"),
            samples=number("samplesperpixel"),
            frames=number("imagedepth"),
            sample_bytes=-(-number("bitspersample") // 8),
            what=what,
        )
        tile = number("tilelength") * number("tilewidth") * number("tiledepth")
        if tile > MAX_PIXELS:
            raise ImageReadError(
                f"{path.name}: the file declares tiles of {page.tilelength} x {page.tilewidth} "
                f"pixels ({what}); tiles over {MAX_PIXELS / 1e6:.0f} megapixels are not decoded"
            )
        images = _count_tiff_images(tif)
        if images != 1:
            raise _stack_error(path.name, images)
        photometric = number("photometric")
        samples = number("samplesperpixel")
        grey = photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
        alpha = {tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA}
        grey_alpha = samples == 2 and len(page.extrasamples) == 1 and page.extrasamples[0] in alpha
        if grey and samples > 1 and not grey_alpha:
            raise _stack_error(path.name, samples)  # grey planes stored as samples
        image = page.asarray()
    if image.ndim == 3 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and samples > 1:
        image = np.moveaxis(image, 0, -1)  # planar RGB(A) -> (H, W, S)
    if grey_alpha:
        image = image[..., 0]
    if image.dtype.byteorder == ">":
        image = image.astype(image.dtype.newbyteorder("="))
    _check_2d(path, image)
    return image, {"format": "TIFF", "spacing": None}


def _tiff_number(name: str, page: Any, attribute: str) -> int:
    """A TIFF page's integer field; several values (a malformed tag) give the largest, and a
    value that is no number an ImageReadError."""
    value = getattr(page, attribute)
    try:
        if isinstance(value, tuple | list):
            return max(int(v) for v in value)
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(
            f"{name}: the TIFF field {attribute} holds {str(value)[:40]!r}, not a number"
        ) from exc


def _count_tiff_images(tif: tifffile.TiffFile) -> int | str:
    """How many full-resolution images a TIFF holds; reduced-resolution pages (thumbnails,
    pyramid levels) do not count. Only the first pages are inspected: "N or more" past them."""
    pages = tif.pages
    count = 0
    for index in range(_MAX_PAGES_INSPECTED):
        try:
            page = pages[index]
        except IndexError:
            return count
        count += not getattr(page, "is_reduced", False)
    return f"{count} or more" if count > 1 else count


def _read_pillow(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with path.open("rb") as handle:
        reader = BoundedReader(handle, os.fstat(handle.fileno()).st_size)
        return _read_pillow_file(path, cast(BinaryIO, reader))


def _read_pillow_file(path: Path, reader: BinaryIO) -> tuple[np.ndarray, dict[str, Any]]:
    # Image.open reads the header only. Pillow refuses over 2 x Image.MAX_IMAGE_PIXELS (179
    # megapixels) itself, and warns (DecompressionBombWarning) from 89 megapixels on: a warning
    # only, MAX_PIXELS is the limit here (not silenced: warning filters are not thread-safe).
    try:
        pil = Image.open(reader)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"{path.name}: the file declares too many pixels ({exc}); images over "
            f"{MAX_PIXELS / 1e6:.0f} megapixels are not decoded"
        ) from exc
    with pil:
        width, height = pil.size
        # An MPO (camera JPEG with extra views) opens its primary image; any other
        # multi-frame file (animated PNG...) is a stack.
        frames = 1 if pil.format == "MPO" else int(getattr(pil, "n_frames", 1) or 1)
        check_declared_size(
            path.name,
            height,
            width,
            samples=len(pil.getbands()),
            frames=frames,
            what=f"the {pil.format or 'image'} header",
        )
        file_format = pil.format or path.suffix.lstrip(".").upper()
        if pil.mode in _CONVERT_MODES:
            pil = pil.convert(_CONVERT_MODES[pil.mode])
        image = np.asarray(pil)
    if image.dtype.byteorder == ">":
        image = image.astype(image.dtype.newbyteorder("="))
    _check_2d(path, image)
    return image, {"format": file_format, "spacing": None}


def _check_2d(path: Path, image: np.ndarray, error: type[ValueError] = ImageReadError) -> None:
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4)):
        return
    if image.ndim < 2 or image.size == 0:
        raise error(f"{path.name}: the data is not a 2-D image (shape {image.shape})")
    raise error(
        f"{path.name}: 3-D stacks are not supported; expected a 2-D grey or colour image, "
        f"got shape {image.shape}"
    )


def write_image(path: str | Path, array: np.ndarray, *, quality: int = 95) -> Path:
    """Write a 2-D grey or (H, W, 3|4) colour array; the format follows the suffix.

    PNG takes uint8 or uint16 (16-bit grey), JPEG uint8 (``quality``), TIFF any dtype.
    """
    path = Path(path)
    array = np.asarray(array)
    _check_2d(path, array, ValueError)
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
