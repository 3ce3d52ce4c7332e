"""npe2 writer: a Points layer as a landmark CSV (image, landmark, row, col, source)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_nfdp.core.schema import generic_landmark_names
from napari_nfdp.io.annotations import SOURCES, Annotation, export_landmarks_csv


def _column(features: Any, name: str, n: int) -> list[str] | None:
    """A feature column as strings (features may be a DataFrame or a dict of sequences)."""
    if features is None or name not in features:
        return None
    values = [str(v) for v in features[name]]
    return values if len(values) == n else None


def write_points(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """Write the points of a layer as landmark rows; returns the written path.

    Landmark names come from the ``name`` feature (else "<vertebra>-<corner>" from those
    features, else P01, P02, ...), sources from the ``source`` feature (else "human"); the
    image column is the file name in the layer's ``metadata["path"]`` (else the layer name).
    Coordinates are the layer's (row, col) data coordinates: image pixels for a layer on the
    image.
    """
    points = np.asarray(data, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"expected points of shape (N, 2), got {points.shape}")
    points = points[:, -2:]
    n = len(points)
    features = meta.get("features")
    names = _column(features, "name", n)
    if names is None:
        vertebrae, corners = _column(features, "vertebra", n), _column(features, "corner", n)
        if vertebrae is not None and corners is not None:
            names = [f"{v}-{c}" for v, c in zip(vertebrae, corners, strict=True)]
        else:
            names = list(generic_landmark_names(n)) if n else []
    sources = _column(features, "source", n) or ["human"] * n
    sources = [s if s in SOURCES else "human" for s in sources]
    image_path = (meta.get("metadata") or {}).get("path")
    image_name = Path(image_path).name if image_path else str(meta.get("name", ""))
    annotation = Annotation(
        image_name=image_name,
        image_shape=(1, 1),  # not part of the CSV
        landmark_names=tuple(names),
        points=points,
        source=sources,
    )
    return [str(export_landmarks_csv(path, [annotation]))]
