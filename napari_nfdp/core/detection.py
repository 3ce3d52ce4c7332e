"""The one detect path: blank check -> predict -> plausibility -> Cobb angles.

The dock widget's worker, ``nfdp detect`` and the demo all call :func:`detect`, so a film gets
the same checks and the same answer everywhere. Bad input becomes a :class:`Detection` with an
``error``; a prediction that does not look like a spine keeps its points but carries ``doubt``
(status "implausible") and no angles, so nobody reads it as a measurement.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_nfdp.core.cobb import CobbError, CobbResult, cobb_angles
from napari_nfdp.core.localizer import Localizer, Prediction
from napari_nfdp.core.messages import describe_error
from napari_nfdp.core.preprocess import ImageError, to_grey_float32
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES

logger = logging.getLogger(__name__)

# Plausibility of a detection: above these the film probably shows no spine.
NO_SPINE_SIGMA_FACTOR = 5.0  # median sigma vs the model's usual sigma (Prediction.doubt_ratio)
OUTSIDE_FRACTION = 0.25  # share of landmarks outside the image (schemas other than the spine)
MIN_VISIBLE_VERTEBRAE = 4  # fewer whole vertebrae on the film: no spine to measure
FAR_OFF = 1.5  # landmarks this many film sizes from its centre are not an anatomy off the edge
MIN_SPINE_FRACTION = 0.2  # T1 top to L5 bottom, as a fraction of the image height


@dataclass(frozen=True)
class Detection:
    """What one detection produced.

    ``status`` is "ok", "implausible" (points kept in ``prediction`` for checking, ``doubt``
    says why, no angles) or "error" (``error`` says why, no prediction). ``cobb`` is None
    when the angles cannot be measured (``cobb_note`` says why) or the result is implausible.
    """

    image_shape: tuple[int, int]
    prediction: Prediction | None = None
    cobb: CobbResult | None = None
    cobb_note: str | None = None
    doubt: str | None = None
    error: str | None = None
    model_id: str = ""
    seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "implausible" if self.doubt else "ok"


def measure_cobb(
    points: np.ndarray,
    names: Sequence[str],
    image_height: float,
    spacing: Sequence[float] | None = None,
) -> tuple[CobbResult | None, str | None]:
    """Cobb angles of landmarks (NaN rows hidden), or None and the reason they have none."""
    if tuple(names) != SPINE_LANDMARK_NAMES:
        return None, "Cobb angles need the 68-landmark spine model."
    try:
        return cobb_angles(points, image_height, tuple(spacing) if spacing else None), None
    except CobbError as error:
        return None, f"No Cobb angles: {error}."


def is_blank(grey: np.ndarray) -> bool:
    """True when an image has (almost) no contrast, judged on a subsample."""
    step = max(1, int(math.sqrt(grey.size / 65536)))
    low, high = np.percentile(grey[::step, ::step], [1.0, 99.0])
    return bool(high - low <= 1e-6 * max(1.0, abs(float(high))))


def plausibility_warning(prediction: Prediction, image_shape: tuple[int, int]) -> str | None:
    """A "no spine found?" message when a prediction does not look like a spine, else None.

    NFDP's sigma is a relative uncertainty, so it is only compared with the same model's usual
    sigma on its validation films (``prediction.doubt_ratio``).
    """
    height, width = image_shape[:2]
    points = prediction.landmarks
    if not np.isfinite(points).all():
        return "No spine found? The model gave no position for some landmarks."
    if prediction.doubt_ratio > NO_SPINE_SIGMA_FACTOR:
        return (
            "No spine found? The model is unsure everywhere (uncertainty "
            f"{prediction.doubt_ratio:.1f} x its usual)."
        )
    size = np.array([height, width], dtype=float)
    if (np.abs(points - size / 2) > FAR_OFF * size).any():
        return "No spine found? Some landmarks fall far off the film."
    if prediction.landmark_names != SPINE_LANDMARK_NAMES:
        outside = ~prediction.visible
        if outside.mean() > OUTSIDE_FRACTION:
            return f"No spine found? {int(outside.sum())} landmarks fall outside the image."
    else:
        shown = np.flatnonzero(prediction.visible.reshape(-1, 4).all(axis=1))
        if shown.size < MIN_VISIBLE_VERTEBRAE:
            return f"No spine found? Only {shown.size} vertebrae lie on the film."
        if shown[-1] - shown[0] + 1 != shown.size:  # a film shows one stretch of the spine
            return "No spine found? The vertebrae on the film are not one continuous stretch."
        centres = points.reshape(-1, 4, 2).mean(axis=1)
        disorder = int((np.diff(centres[:, 0]) <= 0).sum())
        if disorder > 2:
            return f"No spine found? {disorder} vertebrae are out of top-to-bottom order."
        if centres[-1, 0] - centres[0, 0] < MIN_SPINE_FRACTION * height:
            return "No spine found? The detected spine is implausibly short for this film."
    return None


def detect(
    localizer: Localizer,
    image: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    model_id: str = "",
) -> Detection:
    """Landmarks, plausibility and Cobb angles of one film; never raises for bad input.

    ``spacing`` (row, col) mm per pixel makes the angles physical when the film has it. The
    angles are measured on the landmarks the model places on the film, as the dock does.
    """
    start = time.perf_counter()
    image = np.asarray(image)
    shape = tuple(int(n) for n in image.shape[:2])
    try:
        grey = to_grey_float32(image)
        if is_blank(grey):
            return Detection(
                shape,
                error="No spine found? The image is blank (it has no contrast).",
                model_id=model_id,
            )
        prediction = localizer.predict(image)
    except ImageError as error:
        return Detection(shape, error=f"Cannot analyse this image: {describe_error(error)}")
    except (RuntimeError, ValueError, MemoryError, IndexError) as error:
        logger.exception("detection failed on an image of shape %s", shape)
        return Detection(
            shape, error=f"Detection failed: {describe_error(error)}", model_id=model_id
        )
    doubt = plausibility_warning(prediction, shape)
    cobb, note = None, None
    if doubt is None:
        on_film = np.where(prediction.visible[:, None], prediction.landmarks, np.nan)
        cobb, note = measure_cobb(on_film, prediction.landmark_names, shape[0], spacing)
    return Detection(
        shape,
        prediction=prediction,
        cobb=cobb,
        cobb_note=note,
        doubt=doubt,
        model_id=model_id,
        seconds=time.perf_counter() - start,
    )
