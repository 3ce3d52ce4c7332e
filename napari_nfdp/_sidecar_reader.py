"""npe2 readers for the plugin's own landmark files, opened as the dock shows them.

* ``<image>.nfdp.json`` sidecars: the film, when it lies beside the sidecar under its recorded
  name, and its landmarks;
* ``*.nfdp.csv`` landmark tables (the "NFDP landmark table" writer, the dock's export): one
  landmark layer per image of the table.

Landmark layers are Points layers in image pixels with the dock's features (name, vertebra,
corner, sigma, source, visible, review, label) and style; points marked not visible get
positions between their neighbours and an "x", as in the dock. With the dock open, the
landmark layer opened with a film becomes the dock's editable layer for that film.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_nfdp._reader import LayerData, ReaderFunction
from napari_nfdp.io.annotations import (
    SIDECAR_SUFFIX,
    TABLE_SUFFIX,
    Annotation,
    read_annotation,
    read_landmarks_csv,
    session_from_annotation,
)

logger = logging.getLogger(__name__)


def _paths(path: str | Sequence[str], suffix: str) -> list[Path]:
    """The paths named (one or a list), if every one ends with ``suffix``; else none."""
    paths = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
    ours = paths and all(p.name.lower().endswith(suffix) for p in paths)
    return paths if ours else []


def get_sidecar_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """The reader for ``.nfdp.json`` annotation sidecars; else None."""
    return read_sidecars if _paths(path, SIDECAR_SUFFIX) else None


def get_table_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """The reader for ``.nfdp.csv`` landmark tables; else None."""
    return read_tables if _paths(path, TABLE_SUFFIX) else None


def read_sidecars(path: str | Sequence[str]) -> list[LayerData]:
    """The films and landmarks of one or more sidecars (ValueError naming a bad one)."""
    return [layer for p in _paths(path, SIDECAR_SUFFIX) for layer in read_sidecar(p)]


def read_tables(path: str | Sequence[str]) -> list[LayerData]:
    """The landmark layers of one or more landmark tables (ValueError naming a bad one)."""
    layers = []
    for table in _paths(path, TABLE_SUFFIX):
        for annotation in read_landmarks_csv(table):
            layers.append(landmark_layer(annotation, image_path=None))
    return layers


def read_sidecar(path: str | Path) -> list[LayerData]:
    """A sidecar's film (when found beside it, read as the image reader does) and landmarks.

    A film that is missing or cannot be read leaves the landmarks alone on screen, with a
    napari warning saying why.
    """
    from napari.utils.notifications import show_warning

    from napari_nfdp._reader import get_reader

    path = Path(path)
    annotation = read_annotation(path)  # ValueError naming the file when it is not readable
    image = path.parent / Path(annotation.image_name).name  # beside it, nowhere else
    reader = get_reader(str(image)) if image.is_file() else None
    if reader is None:
        where = "is no radiograph" if image.is_file() else "is not beside it"
        show_warning(
            f"{path.name}: its image {image.name} {where}; showing the landmarks only "
            "(open the image too to see them on it)."
        )
        return [landmark_layer(annotation, image_path=None, sidecar=path)]
    try:
        film = reader(str(image))[0]
    except (OSError, ValueError, MemoryError) as error:
        logger.warning("could not open %s for %s: %s", image, path, error)
        show_warning(f"{path.name}: {error}; showing the landmarks only.")
        return [landmark_layer(annotation, image_path=None, sidecar=path)]
    data, kwargs, _ = film
    if tuple(data.shape[:2]) != annotation.image_shape:
        show_warning(
            f"{path.name} was made for an image of {annotation.image_shape[0]} x "
            f"{annotation.image_shape[1]} pixels, but {image.name} has {data.shape[0]} x "
            f"{data.shape[1]}: the points may not fit it."
        )
    return [film, landmark_layer(annotation, image_path=image, sidecar=path, film=kwargs)]


def landmark_layer(
    annotation: Annotation,
    *,
    image_path: Path | None,
    sidecar: Path | None = None,
    film: dict[str, Any] | None = None,
) -> LayerData:
    """An annotation as a landmark Points layer (placed like ``film``'s layer kwargs, else in
    the annotation's spacing); named as the dock names it."""
    from napari_nfdp.ui.layers import landmark_features, landmark_layer_kwargs

    session = session_from_annotation(annotation)
    features = landmark_features(
        session.names,
        session.source,
        session.visible,
        session.sigma,
        model_review=session.model_review,
    )
    image_name = film["name"] if film else Path(annotation.image_name).stem
    spacing = annotation.spacing
    placement: dict[str, Any] = {"scale": film.get("scale", (1.0, 1.0))} if film else {}
    if film and film.get("units"):
        placement["units"] = film["units"]
    elif not film and spacing:
        placement = {"scale": spacing, "units": ("mm", "mm")}
    metadata = {
        "nfdp_image": image_name,
        "nfdp_image_path": str(image_path) if image_path else None,
        "nfdp_sidecar": str(sidecar) if sidecar else None,
        "nfdp_model": annotation.model,
    }
    kwargs = landmark_layer_kwargs(
        features,
        annotation.image_shape[0],
        name=f"{image_name} landmarks",
        metadata=metadata,
        **placement,
    )
    return session.positions, kwargs, "points"
