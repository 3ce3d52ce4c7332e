"""Cobb angles from the 68 spine landmarks, following the AASCE 2019 challenge algorithm.

Geometry (coordinates are (row, col); the challenge's y is our row):

* each vertebra is reduced to one line, from its left-side midpoint (top-left + bottom-left) / 2
  to its right-side midpoint (top-right + bottom-right) / 2;
* A[a, b] is the angle between the lines of vertebrae a and b, arccos of the cosine clipped to
  [0, 1] (so at most 90 degrees); the largest entry, at the most tilted pair i < j, is the main
  curve;
* the spine is S-shaped when the 34 endplate midpoints fall on both sides of the line joining the
  first (T1 top) and the last (L5 bottom) of them. As in the challenge code, the midpoints tested
  are numbers 0..31 (T1 top to L4 bottom; the L5 top midpoint is not tested);
* C-shape: the other two angles are A[0, i] and A[16, j];
* S-shape with the main curve in the upper half of the image, meaning that the rows of the
  top-endplate midpoints of vertebrae i and j add up to less than the image height (as the
  method doc and the NFDP reference's Python port specify; the challenge's MATLAB script indexes
  the bottom endplates, which can differ only for a main curve straddling mid-height):
  the other two are max A[i, 0..i] (above) and max A[j, j..16] (below);
* S-shape with the main curve in the lower half: max A[i, 0..i] (above, at vertebra k) and
  max A[k, 0..k] (further up).

Partial spines (a chest film ending at L2, a hidden T1): a vertebra with any corner missing is
left out and the same rules run on the visible vertebrae in order (the S test then uses all
their endplate midpoints but the last two, as the challenge does with 17). A curve whose two
end vertebrae are the same one has no angle: it is reported as not measured, with the reason,
never as 0 degrees; a measured curve that reaches the edge of a spine cut off by the film
carries a note that it may continue beyond it. With all 68 landmarks the numbers are exactly
the challenge's.

Ties (including differences below 1e-9 rad of rounding noise) go to the most cranial vertebra,
which is what the challenge's first-maximum rule does in exact arithmetic. Labels: for a C-shape
or an upper main curve MT is the main curve, PT the one above and TL the one below; for a lower
main curve TL is the main curve, MT the one above and PT the one further up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES, SPINE_VERTEBRAE

CURVE_NAMES: tuple[str, str, str] = ("PT", "MT", "TL")
N_LANDMARKS = len(SPINE_LANDMARK_NAMES)
N_VERTEBRAE = len(SPINE_VERTEBRAE)

_REL_TOL = 1e-9  # lengths below this fraction of the spine's extent count as zero
_TIE_RAD = 1e-9  # angles closer than this (radians) count as equal


class CobbError(ValueError):
    """Landmarks or an image height from which Cobb angles cannot be measured."""


@dataclass(frozen=True, eq=False)
class Curve:
    """One curve: its angle in degrees and its end vertebrae (indices 0..16, upper <= lower).

    ``lines`` (2, 2, 2) holds, for the upper then the lower end vertebra, the (row, col)
    pixel endpoints [left-side midpoint, right-side midpoint] of the line the angle is measured
    on. A curve whose end vertebrae coincide is not ``measured``; ``note`` then says why (and,
    for a measured curve, whether it may continue past the visible spine).
    """

    name: str
    angle: float
    upper: int
    lower: int
    lines: np.ndarray
    note: str = ""

    @property
    def measured(self) -> bool:
        """False when the curve has no angle (its two end vertebrae are the same one)."""
        return self.upper != self.lower

    @property
    def span(self) -> str:
        """The end vertebrae as text, e.g. "T5-T12"."""
        return f"{SPINE_VERTEBRAE[self.upper]}-{SPINE_VERTEBRAE[self.lower]}"


@dataclass(frozen=True, eq=False)
class CobbResult:
    """The three Cobb angles (degrees) of a spine, its shape and its curves (PT, MT, TL).

    ``main`` names the curve holding the largest angle: "MT" for a C-shape or an upper main
    curve, "TL" for a lower main curve. ``left_out`` lists the vertebrae (indices 0..16) that
    had a missing corner and took no part. The float fields keep the challenge's numbers (0
    for a curve that is not measured); what a person reads goes through :meth:`describe`.
    """

    pt: float
    mt: float
    tl: float
    curve_type: Literal["C", "S"]
    curves: tuple[Curve, Curve, Curve]
    main: str = "MT"
    left_out: tuple[int, ...] = ()

    def curve(self, name: str) -> Curve:
        """The curve called ``name`` ("PT", "MT" or "TL")."""
        for curve in self.curves:
            if curve.name == name:
                return curve
        raise ValueError(f"unknown curve {name!r}; expected one of {', '.join(CURVE_NAMES)}")

    def describe(self, name: str) -> str:
        """A short text such as "MT 42 deg, T5-T12", or "PT not measured: <why>"."""
        curve = self.curve(name)
        if not curve.measured:
            return f"{curve.name} not measured: {curve.note}"
        text = f"{curve.name} {curve.angle:.0f} deg, {curve.span}"
        return f"{text} ({curve.note})" if curve.note else text

    def measured_angle(self, name: str) -> float | None:
        """The angle of a curve in degrees, None when it is not measured."""
        curve = self.curve(name)
        return curve.angle if curve.measured else None

    @property
    def challenge_angles(self) -> tuple[float, float, float]:
        """The angles in the AASCE challenge's output order: largest, above it, the third.

        The challenge files list the angles in this positional order (under the headings
        PT, MT, TL/L), so SMAPE against challenge ground truth must use it.
        """
        if self.main == "TL":
            return (self.tl, self.mt, self.pt)
        return (self.mt, self.pt, self.tl)


def cobb_angles(
    landmarks: np.ndarray,
    image_height: float,
    spacing: tuple[float, float] | None = None,
) -> CobbResult:
    """Cobb angles of a spine from its 68 (row, col) landmarks (T1..L5, AASCE corner order).

    NaN rows are missing or hidden points: a vertebra with any of its four corners missing is
    left out and the angles come from the visible vertebrae (at least two). ``image_height``
    (pixels) decides, for an S-shaped spine, whether the main curve is in the upper or lower
    half of the image. ``spacing`` (row, col) in mm per pixel, when known, makes the angles
    physical (they differ from the pixel-grid ones when the pixels are not square).
    Raises CobbError for input that has no sound answer.
    """
    points = _checked_landmarks(landmarks)
    height = _checked_height(image_height)
    scale = _checked_spacing(spacing)
    corners = points.reshape(N_VERTEBRAE, 4, 2)
    shown = np.flatnonzero(np.isfinite(corners).all(axis=(1, 2)))
    if shown.size < 2:
        raise CobbError(
            "Cobb angles need at least two vertebrae with all four corners visible; "
            f"{shown.size} found"
        )
    pixels = corners[shown].reshape(-1, 2)
    left = (pixels[0::4] + pixels[2::4]) / 2.0
    right = (pixels[1::4] + pixels[3::4]) / 2.0
    endplates = (pixels[0::2] + pixels[1::2]) / 2.0 * scale  # per vertebra: top, bottom
    _check_geometry(pixels * scale, (right - left) * scale, endplates, shown)

    angles = _angle_matrix((right - left) * scale)
    i, j = _most_tilted_pair(angles)
    s_shaped = _is_s_shaped(endplates)
    last = len(shown) - 1
    if not s_shaped:
        main = "MT"
        spans = {"MT": (i, j), "PT": (0, i), "TL": (j, last)}
    elif endplates[2 * i, 0] + endplates[2 * j, 0] < height * scale[0]:
        main = "MT"
        above = _first_max(angles[i, : i + 1])
        below = j + _first_max(angles[j, j:])
        spans = {"MT": (i, j), "PT": (above, i), "TL": (j, below)}
    else:
        main = "TL"
        above = _first_max(angles[i, : i + 1])
        further_up = _first_max(angles[above, : above + 1])
        spans = {"TL": (i, j), "MT": (above, i), "PT": (further_up, above)}

    curves = tuple(
        _make_curve(name, angles, spans[name], left, right, shown, main) for name in CURVE_NAMES
    )
    pt, mt, tl = curves
    left_out = tuple(int(v) for v in np.setdiff1d(np.arange(N_VERTEBRAE), shown))
    return CobbResult(
        pt=pt.angle,
        mt=mt.angle,
        tl=tl.angle,
        curve_type="S" if s_shaped else "C",
        curves=(pt, mt, tl),
        main=main,
        left_out=left_out,
    )


def _checked_landmarks(landmarks: np.ndarray) -> np.ndarray:
    try:
        points = np.array(landmarks, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CobbError(f"landmarks must be a numeric ({N_LANDMARKS}, 2) array: {exc}") from None
    if points.shape != (N_LANDMARKS, 2):
        raise CobbError(
            f"Cobb angles need {N_LANDMARKS} (row, col) spine landmarks, got shape {points.shape}"
        )
    bad = np.flatnonzero(np.isinf(points).any(axis=1))
    if bad.size:
        names = ", ".join(SPINE_LANDMARK_NAMES[k] for k in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise CobbError(f"landmarks must be finite (or NaN when missing): {names}{more}")
    return points


def _checked_height(image_height: float) -> float:
    try:
        height = float(image_height)
    except (TypeError, ValueError):
        raise CobbError(f"image height must be a number, got {image_height!r}") from None
    if not (math.isfinite(height) and height > 0):
        raise CobbError(f"image height must be a positive finite number, got {image_height!r}")
    return height


def _checked_spacing(spacing: tuple[float, float] | None) -> np.ndarray:
    if spacing is None:
        return np.ones(2)
    try:
        scale = np.array(spacing, dtype=np.float64).reshape(2)
    except (TypeError, ValueError):
        raise CobbError(f"spacing must be two numbers (row, col), got {spacing!r}") from None
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        raise CobbError(f"spacing must be two positive finite numbers, got {spacing!r}")
    return scale


def _check_geometry(
    points: np.ndarray, vectors: np.ndarray, endplates: np.ndarray, shown: np.ndarray
) -> None:
    extent = float(np.ptp(points, axis=0).max())
    if not extent > 0:
        raise CobbError("all landmarks coincide: the spine has zero extent")
    spread = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    if spread[1] <= _REL_TOL * spread[0]:
        raise CobbError("all landmarks lie on one line: no vertebra shape to measure")
    lengths = np.hypot(vectors[:, 0], vectors[:, 1])
    flat = np.flatnonzero(lengths <= _REL_TOL * extent)
    if flat.size:
        names = ", ".join(SPINE_VERTEBRAE[shown[v]] for v in flat)
        raise CobbError(
            f"vertebra {names}: left-side and right-side midpoints coincide, so it has no line"
        )
    chord = endplates[0] - endplates[-1]
    if math.hypot(chord[0], chord[1]) <= _REL_TOL * extent:
        first, last = SPINE_VERTEBRAE[shown[0]], SPINE_VERTEBRAE[shown[-1]]
        raise CobbError(f"the {first} top and {last} bottom endplate midpoints coincide")


def _angle_matrix(vectors: np.ndarray) -> np.ndarray:
    """A[a, b] = angle between vectors a and b, in [0, pi/2], exactly symmetric."""
    rows, cols = vectors[:, 0], vectors[:, 1]
    dot = rows[:, None] * rows[None, :] + cols[:, None] * cols[None, :]
    cross = rows[:, None] * cols[None, :] - cols[:, None] * rows[None, :]
    # atan2 is accurate at small angles; capping at 90 deg equals clipping the cosine at 0
    return np.minimum(np.arctan2(np.abs(cross), dot), np.pi / 2)


def _first_max(values: np.ndarray) -> int:
    return int(np.flatnonzero(values >= values.max() - _TIE_RAD)[0])


def _most_tilted_pair(angles: np.ndarray) -> tuple[int, int]:
    """First (i, j), i <= j, in row-major order whose angle is the largest."""
    near_max = np.triu(angles >= angles.max() - _TIE_RAD)
    i, j = np.argwhere(near_max)[0]
    return int(i), int(j)


def _is_s_shaped(endplates: np.ndarray) -> bool:
    """Whether the tested endplate midpoints lie on both sides of the first-last chord.

    All midpoints but the last two are tested (0..31 of a whole spine, as in the challenge).
    """
    first, last = endplates[0], endplates[-1]
    chord = first - last
    length = math.hypot(chord[0], chord[1])
    rel = endplates[: len(endplates) - 2] - last
    deviation = (chord[0] * rel[:, 1] - chord[1] * rel[:, 0]) / length
    tol = _REL_TOL * length
    return bool(deviation.max() > tol and deviation.min() < -tol)


def _make_curve(
    name: str,
    angles: np.ndarray,
    span: tuple[int, int],
    left: np.ndarray,
    right: np.ndarray,
    shown: np.ndarray,
    main: str,
) -> Curve:
    """The curve over positions ``span`` of the visible vertebrae ``shown``."""
    upper, lower = span
    ends = [upper, lower]
    lines = np.stack([left[ends], right[ends]], axis=1)
    lines.setflags(write=False)
    return Curve(
        name=name,
        angle=math.degrees(float(angles[upper, lower])),
        upper=int(shown[upper]),
        lower=int(shown[lower]),
        lines=lines,
        note=_curve_note(name, upper, lower, shown, main),
    )


def _curve_note(name: str, upper: int, lower: int, shown: np.ndarray, main: str) -> str:
    """Why a curve has no angle, or that it may continue past the visible spine ("")."""
    top, bottom = SPINE_VERTEBRAE[shown[0]], SPINE_VERTEBRAE[shown[-1]]
    cut_above, cut_below = shown[0] > 0, shown[-1] < N_VERTEBRAE - 1
    if upper == lower:
        if name == main:
            return "the visible vertebrae are all parallel"
        below = name == "TL" and main == "MT"
        where = (
            f"below {SPINE_VERTEBRAE[shown[lower]]}"
            if below
            else (f"above {SPINE_VERTEBRAE[shown[upper]]}")
        )
        if below and cut_below:
            return f"no curve {where} in the visible spine (it ends at {bottom})"
        if not below and cut_above:
            return f"no curve {where} in the visible spine (it starts at {top})"
        return f"no curve {where}"
    if upper == 0 and cut_above:
        return f"may continue above {top}, the first visible vertebra"
    if lower == len(shown) - 1 and cut_below:
        return f"may continue below {bottom}, the last visible vertebra"
    return ""
