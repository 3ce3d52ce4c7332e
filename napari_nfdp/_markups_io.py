"""npe2 reader and writer of 3D Slicer markups (``.mrk.json``) for landmark Points layers.

The reader opens the point list of a markups file as a Points layer with the features and
style of the dock's landmark layers (name, vertebra, corner, source, visible, ...); the writer
saves a landmark Points layer as markups (points, and the Cobb lines and angles when the
image the points belong to is known). The format itself is :mod:`napari_nfdp.io.markups`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_nfdp._reader import LayerData, ReaderFunction
from napari_nfdp._writer import layer_landmarks
from napari_nfdp.core.session import LandmarkSession
from napari_nfdp.io.markups import (
    MARKUPS_SUFFIX,
    FilmFrame,
    MarkupsLandmarks,
    film_frame,
    read_markups,
    write_markups,
)

logger = logging.getLogger(__name__)


def get_markups_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """The reader for one ``.mrk.json`` file; else None."""
    if isinstance(path, str | Path) and str(path).lower().endswith(MARKUPS_SUFFIX):
        return read_markups_layers
    return None


def read_markups_layers(path: str | Sequence[str]) -> list[LayerData]:
    """The point list of a markups file as a landmark Points layer (ValueError if unreadable).

    Points are in pixels of the film with its spacing as the layer scale when the file says
    so; otherwise the coordinates are the file's millimetres at scale 1, which overlays an
    image opened with its spacing in mm. Hidden (undefined) points are drawn as crosses.
    """
    from napari_nfdp.ui.layers import POINT_SIZE_FRACTION, landmark_features, point_style

    path = Path(path if isinstance(path, str | Path) else path[0])
    marks = read_markups(path)
    session = LandmarkSession.from_saved(
        marks.names, marks.points, marks.source, None, marks.model, marks.image_shape
    )
    features = landmark_features(marks.names, marks.source, session.visible, None)
    positions = session.positions
    if marks.image_shape is not None:
        height = float(marks.image_shape[0])
    else:  # about the spine's length: the film is somewhat taller
        height = 1.3 * float(np.ptp(positions[:, 0])) or 100.0
    spacing = marks.frame.spacing
    kwargs: dict[str, Any] = {
        "name": f"{path.name[: -len(MARKUPS_SUFFIX)]} landmarks",
        "features": features,
        "size": max(3.0, height * POINT_SIZE_FRACTION),
        "scale": tuple(spacing) if spacing else (1.0, 1.0),
        "border_width_is_relative": True,
        "metadata": {
            **marks.frame.to_info(),
            "image_name": marks.image_name,
            "image_shape": marks.image_shape,
            "nfdp_markups": str(path),
            "nfdp_notes": list(marks.notes),
        },
        **point_style(features),
    }
    if spacing:
        kwargs["units"] = ("mm", "mm")
    return [(positions, kwargs, "points")]


def write_markups_layer(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write a Points layer as a ``.mrk.json``; returns the written path.

    Names, sources and hidden points are read as the landmark table's writer reads them
    (:func:`napari_nfdp._writer.layer_landmarks`). The film's frame and size come
    from the image layer the points belong to in the current viewer (a dock landmark layer),
    else from the layer's metadata (a layer read from markups, or the film's file), else from
    its scale; the Cobb lines and angles are written when the film's size is known.
    """
    points, names, sources = layer_landmarks(data, meta)
    if len(points) == 0:
        raise ValueError("the layer has no points to write")
    metadata = dict(meta.get("metadata") or {})
    frame, image_name, shape = _film_of(metadata, meta)
    landmarks = MarkupsLandmarks(
        tuple(names),
        points,
        sources,
        frame,
        image_name or str(meta.get("name", "")),
        shape,
    )
    return [str(write_markups(path, landmarks))]


def _film_of(
    metadata: Mapping[str, Any], meta: Mapping[str, Any]
) -> tuple[FilmFrame, str | None, tuple[int, int] | None]:
    """The frame, image name and size of the film a Points layer belongs to (as far as known)."""
    image = _image_layer(metadata.get("nfdp_image"))
    if image is not None:
        info = image.metadata
        data = image.data[0] if image.multiscale else image.data
        path = info.get("path")
        name = Path(path).name if path else image.name
        return FilmFrame.from_info(info), name, tuple(int(n) for n in data.shape[:2])
    shape = metadata.get("image_shape")
    shape = tuple(int(n) for n in shape) if shape is not None else None
    if "image_orientation" in metadata:
        return FilmFrame.from_info(metadata), metadata.get("image_name"), shape
    scale = tuple(float(s) for s in (meta.get("scale") or (1.0, 1.0))[-2:])
    spacing = None if scale == (1.0, 1.0) else scale
    image_path = metadata.get("nfdp_image_path")  # the film of a dock layer, its image closed
    if image_path:
        return film_frame(image_path, spacing), Path(image_path).name, shape
    return FilmFrame(spacing), metadata.get("image_name"), shape


def _image_layer(name: Any) -> Any:
    """The image layer called ``name`` in the current napari viewer, if there is one."""
    if not name:
        return None
    try:
        import napari
        from napari.layers import Image

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no viewer, no napari: the layer's own data is used
        logger.debug("no current napari viewer", exc_info=True)
        return None
    if viewer is None or name not in viewer.layers:
        return None
    layer = viewer.layers[name]
    return layer if isinstance(layer, Image) else None
