"""The Cobb report: one CSV line per film, the same columns from the GUI, the CLI and the demo.

Columns (``REPORT_COLUMNS``): the film, its status ("ok", "implausible: <why>", "error: <why>",
"no Cobb angles: <why>"), curve type and main curve, then for PT, MT and TL the angle in
degrees (empty when not measured), the end vertebrae and a note (why it is not measured, or
that it may continue past the visible spine), then how the angles were measured ("mm" on the
physical grid when the pixel spacing is known, else "pixels"), the spacing and the DICOM element
it came from (``spacing_source``: "PixelSpacing", "ImagerPixelSpacing corrected by
EstimatedRadiographicMagnificationFactor", "ImagerPixelSpacing", "NominalScannedPixelSpacing",
empty when unknown), the model version, and how many points a person corrected or marked not
visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_nfdp.core.cobb import CURVE_NAMES, CobbResult
from napari_nfdp.core.detection import measure_cobb
from napari_nfdp.io.annotations import Annotation

REPORT_COLUMNS: tuple[str, ...] = (
    "image",
    "status",
    "curve_type",
    "main_curve",
    *(f"{name}{suffix}" for name in CURVE_NAMES for suffix in ("", "_ends", "_note")),
    "angle_unit",
    "measured_on",
    "spacing_row_mm",
    "spacing_col_mm",
    "spacing_source",
    "model",
    "human_points",
    "hidden_points",
)


def status_cell(message: str) -> str:
    """A message as a report status: "No Cobb angles: x." -> "no Cobb angles: x"."""
    text = message.rstrip(".")
    return text[:1].lower() + text[1:]


def angle_cells(result: CobbResult | None) -> list[str]:
    """The curve type, main curve and the (angle, ends, note) cells of PT, MT and TL."""
    if result is None:
        return [""] * (2 + 3 * len(CURVE_NAMES))
    cells = [result.curve_type, result.main]
    for curve in result.curves:
        angle = f"{curve.angle:.1f}" if curve.measured else ""
        cells += [angle, curve.span if curve.measured else "", curve.note]
    return cells


def report_row(
    image: str,
    status: str,
    result: CobbResult | None,
    *,
    spacing: Sequence[float] | None,
    model: str | None,
    human_points: int | str = "",
    hidden_points: int | str = "",
    spacing_source: str | None = None,
) -> list[object]:
    """One line of the report (``result`` None: no angles, ``status`` says why)."""
    spacing_cells = [f"{s:.6g}" for s in spacing] if spacing else ["", ""]
    return [
        image,
        status,
        *angle_cells(result),
        "deg",
        "mm" if spacing else "pixels",
        *spacing_cells,
        (spacing_source or "") if spacing else "",
        model or "",
        human_points,
        hidden_points,
    ]


def annotation_report_row(image: str, annotation: Annotation) -> list[object]:
    """The report line of a saved annotation (angles measured on its visible vertebrae)."""
    hidden = int((~np.isfinite(annotation.points).all(axis=1)).sum())
    result, note = measure_cobb(
        annotation.points,
        annotation.landmark_names,
        annotation.image_shape[0],
        annotation.spacing,
    )
    return report_row(
        image,
        "ok" if result is not None else status_cell(note or ""),
        result,
        spacing=annotation.spacing,
        model=annotation.model,
        human_points=annotation.source.count("human"),
        hidden_points=hidden,
        spacing_source=annotation.spacing_source,
    )
