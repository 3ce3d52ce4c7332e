"""npe2 writer "NFDP landmark table": a Points layer as a ``.nfdp.csv`` landmark table.

The table has the columns of the dock's landmark export (image, landmark, row, col, row_mm,
col_mm, sigma_row, sigma_col, visible, source, model); the plugin's reader for ``*.nfdp.csv``
(:mod:`napari_nfdp._sidecar_reader`) opens it again as landmark Points layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_nfdp.core.schema import generic_landmark_names
from napari_nfdp.io.annotations import SOURCES, Annotation, export_landmarks_csv


def _column(features: Any, name: str, n: int) -> list[Any] | None:
    """A feature column as a list (features may be a DataFrame or a dict of sequences)."""
    if features is None or name not in features:
        return None
    values = list(features[name])
    return values if len(values) == n else None


def _image_name(meta: Mapping[str, Any]) -> str:
    """The image a layer belongs to: the file of its image (the dock's landmark layers), of its
    own ``path`` metadata, else the image layer's name, else the layer's name."""
    metadata = meta.get("metadata") or {}
    path = metadata.get("nfdp_image_path") or metadata.get("path")
    if path:
        return Path(path).name
    return str(metadata.get("nfdp_image") or meta.get("name", ""))


def _spacing(meta: Mapping[str, Any]) -> tuple[float, float] | None:
    """(row, col) mm per pixel when the layer is scaled in millimetres, else None."""
    units = [str(u) for u in (meta.get("units") or ())][-2:]
    scale = [float(s) for s in (meta.get("scale") or ())][-2:]
    if units == ["millimeter"] * 2 and len(scale) == 2 and min(scale) > 0:
        return scale[0], scale[1]
    return None


def layer_landmarks(data: Any, meta: Mapping[str, Any]) -> tuple[np.ndarray, list[str], list[str]]:
    """The landmarks of a Points layer as napari hands it to a writer: (N, 2) (row, col)
    points with NaN where the ``visible`` feature is False (bools, or their text when the
    features came from a file), names from the ``name`` feature (else "<vertebra>-<corner>",
    else P01, P02, ...), sources from ``source`` (else "human")."""
    points = np.asarray(data, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"expected points of shape (N, 2), got {points.shape}")
    points = points[:, -2:].copy()
    n = len(points)
    features = meta.get("features")
    names = _column(features, "name", n)
    if names is None:
        vertebrae, corners = _column(features, "vertebra", n), _column(features, "corner", n)
        if vertebrae is not None and corners is not None:
            names = [f"{v}-{c}" for v, c in zip(vertebrae, corners, strict=True)]
        else:
            names = list(generic_landmark_names(n)) if n else []
    sources = [str(s) for s in _column(features, "source", n) or ["human"] * n]
    sources = [s if s in SOURCES else "human" for s in sources]
    visible = _column(features, "visible", n)
    if visible is not None:
        points[[str(v).strip().lower() in ("false", "0", "") for v in visible]] = np.nan
    return points, [str(name) for name in names], sources


def write_points(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write the points of a layer as landmark rows; returns the written path.

    Landmark names come from the ``name`` feature (else "<vertebra>-<corner>" from those
    features, else P01, P02, ...), sources from the ``source`` feature (else "human"); a point
    whose ``visible`` feature is False is written as not visible (no position), as the dock
    saves it. Coordinates are the layer's (row, col) data coordinates: image pixels for the
    dock's layers; the mm columns are filled when the layer is scaled in millimetres.
    """
    points, names, sources = layer_landmarks(data, meta)
    annotation = Annotation(
        image_name=_image_name(meta),
        image_shape=(1, 1),  # not part of the table
        landmark_names=tuple(names),
        points=points,
        source=sources,
        spacing=_spacing(meta),
    )
    return [str(export_landmarks_csv(path, [annotation]))]
