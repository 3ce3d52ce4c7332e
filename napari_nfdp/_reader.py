"""npe2 reader: radiographs (DICOM, PNG, JPEG, TIFF, BMP) and folders of them as grey Image layers.

A folder (or a list of paths) opens its first image; the layer metadata lists all of them under
``nfdp_files`` with ``nfdp_index`` so the dock widget can step through them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_nfdp.core.preprocess import ImageError, to_grey_float32
from napari_nfdp.io.dicom_meta import is_dicomdir
from napari_nfdp.io.images import (
    IMAGE_SUFFIXES,
    is_dicom,
    is_regular_file,
    list_images,
    read_image,
)

LayerData = tuple[np.ndarray, dict[str, Any], str]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """The reader for an image file, a folder holding images, or a list of them; else None."""
    return _read if _image_files(path) else None


def _image_files(path: str | Sequence[str]) -> list[Path]:
    """The image files a path names: itself, a folder's images (sorted), or those of a list."""
    if not isinstance(path, str | Path):
        return [file for item in path for file in _image_files(item)]
    path = Path(path)
    if path.is_dir():
        return list_images(path)
    # A readable suffix with bad content is still ours: reading it gives a clear error (a pipe
    # or device named like an image included). Only regular files are opened to sniff for the
    # DICOM preamble: this runs on the GUI thread, and opening a named pipe blocks. A DICOMDIR
    # (the index of a DICOM medium) holds no image: not ours.
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    return [path] if is_regular_file(path) and is_dicom(path) and not is_dicomdir(path) else []


def _read(path: str | Sequence[str]) -> list[LayerData]:
    files = _image_files(path)
    if not files:
        raise ValueError(f"no radiographs (DICOM, PNG, JPEG, TIFF, BMP) found in {path}")
    if isinstance(path, str | Path) and Path(path).is_file():  # one film: step through its folder
        siblings = _image_files(str(Path(path).parent))
        names = [f.name for f in siblings]
        if files[0].name in names:
            return [read_layer(files[0], files=siblings, index=names.index(files[0].name))]
    return [read_layer(files[0], files=files, index=0)]


def read_layer(
    path: str | Path, *, files: Sequence[str | Path] | None = None, index: int = 0
) -> LayerData:
    """One image file as napari layer data: a grey array, scaled in mm when the spacing is known.

    ``files`` / ``index`` (default: just this file) go into the metadata as ``nfdp_files`` /
    ``nfdp_index``. Bad content raises a ``ValueError`` naming the file:
    :class:`~napari_nfdp.io.images.ImageReadError` when the file cannot be read (not an image,
    corrupt, too large, a stack, not a regular file) and
    :class:`~napari_nfdp.core.preprocess.ImageError` when the image cannot be analysed (too
    small, too elongated, NaN values).
    """
    path = Path(path)
    image, info = read_image(path)
    try:
        grey = to_grey_float32(image)
    except ImageError as error:
        raise ImageError(f"{path.name}: {error}") from error
    if image.ndim == 3 and np.issubdtype(image.dtype, np.integer):
        # Luminance stays inside the input's range; rounded in place (large colour films).
        data = np.rint(grey, out=grey).astype(image.dtype)
    else:
        data = image if image.ndim == 2 else grey
    spacing = info.get("spacing")
    metadata = {
        **info,
        "path": str(path),
        "spacing": spacing,
        "spacing_source": info.get("spacing_source") if spacing else None,
        "modality": info.get("modality"),
        "nfdp_files": [str(f) for f in (files or [path])],
        "nfdp_index": index,
    }
    kwargs: dict[str, Any] = {
        "name": path.stem,
        "scale": tuple(spacing) if spacing else (1.0, 1.0),
        "metadata": metadata,
        "colormap": "gray",
    }
    if spacing:
        kwargs["units"] = ("mm", "mm")
    return data, kwargs, "image"
