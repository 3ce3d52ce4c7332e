"""Cobb angles on spines built geometrically, with hand-computed expected values."""

from __future__ import annotations

import math

import numpy as np
import pytest

import napari_nfdp
from napari_nfdp.cobb import CobbError, CobbResult, Curve, cobb_angles
from napari_nfdp.core import cobb as core_cobb

PITCH, HEIGHT, WIDTH = 40.0, 30.0, 44.0  # vertebra spacing, body height and width (px)
TOP = 100.0  # row of the T1 centre


def place_vertebrae(centres: np.ndarray, tilts_deg) -> np.ndarray:
    """68 (row, col) corners of 17 rectangles centred at ``centres`` with the given tilts.

    Tilt t rotates the endplates so that, in (x, y) = (col, row) terms, the endplate direction
    is (cos t, sin t): a positive tilt lowers the right side. The angle between the lines of two
    vertebrae is therefore the difference of their tilts.
    """
    points = []
    for (row, col), tilt in zip(np.asarray(centres, float), tilts_deg, strict=True):
        t = math.radians(tilt)
        across = np.array([math.sin(t), math.cos(t)]) * WIDTH / 2  # left -> right
        down = np.array([math.cos(t), -math.sin(t)]) * HEIGHT / 2  # top -> bottom
        centre = np.array([row, col])
        points += [
            centre - across - down,  # top-left
            centre + across - down,  # top-right
            centre - across + down,  # bottom-left
            centre + across + down,  # bottom-right
        ]
    return np.array(points)


def make_spine(tilts_deg) -> np.ndarray:
    """A spine whose centre-line follows the vertebra tilts (vertebral axes are tangents)."""
    tilts = np.asarray(tilts_deg, float)
    mid_tilts = np.radians((tilts[:-1] + tilts[1:]) / 2)
    cols = 300.0 - np.concatenate([[0.0], np.cumsum(PITCH * np.tan(mid_tilts))])
    rows = TOP + PITCH * np.arange(17)
    return place_vertebrae(np.column_stack([rows, cols]), tilts)


def bottom_endplate_row(points: np.ndarray, vertebra: int) -> float:
    return float(points[4 * vertebra + 2 : 4 * vertebra + 4, 0].mean())


def top_endplate_row(points: np.ndarray, vertebra: int) -> float:
    return float(points[4 * vertebra : 4 * vertebra + 2, 0].mean())


def spans(result: CobbResult) -> dict[str, tuple[int, int]]:
    return {c.name: (c.upper, c.lower) for c in result.curves}


def angles(result: CobbResult) -> np.ndarray:
    return np.array([result.pt, result.mt, result.tl])


# Main curve T5 (+22) to L2 (-20): 42 deg; PT = T1 (3) to T5 = 19; TL = L2 to L5 (-2) = 18.
C_TILTS = [3, 6, 12, 18, 22, 16, 10, 4, 0, -4, -8, -12, -16, -20, -14, -6, -2]
# Main curve T4 (+24) to T9 (-30): 54 deg; above: T1 (0) to T4 = 24; below: T9 to L2 (14) = 44.
S_UPPER_TILTS = [0, 8, 16, 24, 12, 0, -12, -24, -30, -20, -10, 0, 8, 14, 10, 5, 0]
# The same spine upside down: main curve T9 (-30) to L2 (24): 54 deg, in the lower half.
S_LOWER_TILTS = S_UPPER_TILTS[::-1]
IMAGE_HEIGHT = 900.0  # the spine spans rows 85..755


def test_straight_spine_gives_zero_angles():
    for tilt in (0.0, 15.0):  # upright, and rigidly leaning
        result = cobb_angles(make_spine([tilt] * 17), IMAGE_HEIGHT)
        np.testing.assert_allclose(angles(result), 0.0, atol=1e-9)
        assert result.curve_type == "C"
        assert spans(result)["MT"] == (0, 0)


def test_c_curve_angles_end_vertebrae_and_lines():
    points = make_spine(C_TILTS)
    result = cobb_angles(points, IMAGE_HEIGHT)
    assert result.curve_type == "C"
    assert result.main == "MT"
    np.testing.assert_allclose(angles(result), [19.0, 42.0, 18.0], atol=1e-9)
    assert spans(result) == {"PT": (0, 4), "MT": (4, 13), "TL": (13, 16)}
    assert result.describe("MT") == "MT 42 deg, T5-L2"
    assert result.describe("PT") == "PT 19 deg, T1-T5"
    assert result.describe("TL") == "TL 18 deg, L2-L5"
    np.testing.assert_allclose(result.challenge_angles, [42.0, 19.0, 18.0], atol=1e-9)

    mt = result.curve("MT")
    assert isinstance(mt, Curve) and mt.lines.shape == (2, 2, 2)
    for end, vertebra in enumerate((4, 13)):
        tl, tr, bl, br = points[4 * vertebra : 4 * vertebra + 4]
        np.testing.assert_allclose(mt.lines[end], [(tl + bl) / 2, (tr + br) / 2])
    assert [c.name for c in result.curves] == ["PT", "MT", "TL"]


def test_s_curve_with_upper_main_curve():
    result = cobb_angles(make_spine(S_UPPER_TILTS), IMAGE_HEIGHT)
    assert result.curve_type == "S"
    assert result.main == "MT"
    np.testing.assert_allclose(angles(result), [24.0, 54.0, 44.0], atol=1e-9)
    assert spans(result) == {"PT": (0, 3), "MT": (3, 8), "TL": (8, 13)}
    np.testing.assert_allclose(result.challenge_angles, [54.0, 24.0, 44.0], atol=1e-9)


def test_s_curve_with_lower_main_curve():
    result = cobb_angles(make_spine(S_LOWER_TILTS), IMAGE_HEIGHT)
    assert result.curve_type == "S"
    assert result.main == "TL"
    # TL = main (T9-L2), MT = above it (T4-T9: 44), PT = further up (T1-T4: 14)
    np.testing.assert_allclose(angles(result), [14.0, 44.0, 54.0], atol=1e-9)
    assert spans(result) == {"PT": (0, 3), "MT": (3, 8), "TL": (8, 13)}
    assert result.describe("TL") == "TL 54 deg, T9-L2"
    np.testing.assert_allclose(result.challenge_angles, [54.0, 44.0, 14.0], atol=1e-9)


def test_height_test_uses_top_endplate_midpoints():
    points = make_spine(S_UPPER_TILTS)
    top_sum = top_endplate_row(points, 3) + top_endplate_row(points, 8)
    bottom_sum = bottom_endplate_row(points, 3) + bottom_endplate_row(points, 8)
    assert top_sum < bottom_sum

    # between the two sums: the top endplates (method doc) say "upper half", the bottom ones not
    upper = cobb_angles(points, (top_sum + bottom_sum) / 2)
    assert upper.main == "MT"

    lower = cobb_angles(points, top_sum - 1e-6)
    assert lower.main == "TL"
    # main T4-T9 = 54 is TL, above it T1-T4 = 24 is MT, and above T1 nothing: PT = 0 at T1
    np.testing.assert_allclose(angles(lower), [0.0, 24.0, 54.0], atol=1e-9)
    assert spans(lower) == {"PT": (0, 0), "MT": (0, 3), "TL": (3, 8)}


def test_ties_go_to_the_most_cranial_vertebra():
    # +20 at T4 and T5, -20 at L1 and L2: the main curve runs from T4 to L1
    tilts = [0, 5, 10, 20, 20, 10, 5, 0, 0, 0, -5, -10, -20, -20, -10, -5, 0]
    result = cobb_angles(make_spine(tilts), IMAGE_HEIGHT)
    assert result.curve_type == "C"
    assert spans(result) == {"PT": (0, 3), "MT": (3, 12), "TL": (12, 16)}
    np.testing.assert_allclose(angles(result), [20.0, 40.0, 20.0], atol=1e-9)


def test_angles_above_90_degrees_are_capped():
    centres = np.column_stack([TOP + PITCH * np.arange(17), np.full(17, 300.0)])
    tilts = [0.0] * 16 + [120.0]  # L5 drawn with its left and right sides swapped
    result = cobb_angles(place_vertebrae(centres, tilts), IMAGE_HEIGHT)
    assert max(angles(result)) == pytest.approx(90.0)


@pytest.mark.parametrize("tilts", [C_TILTS, S_UPPER_TILTS, S_LOWER_TILTS])
def test_invariant_to_translation_scale_rotation_and_mirroring(tilts):
    points = make_spine(tilts)
    reference = cobb_angles(points, IMAGE_HEIGHT)

    def check(moved: np.ndarray, height: float) -> None:
        result = cobb_angles(moved, height)
        np.testing.assert_allclose(angles(result), angles(reference), atol=1e-7)
        assert spans(result) == spans(reference)
        assert result.curve_type == reference.curve_type

    # a vertical shift moves the spine within the image, so the canvas grows with it
    check(points + [250.0, -1000.0], IMAGE_HEIGHT + 2 * 250.0)
    check(points * 3.7, IMAGE_HEIGHT * 3.7)
    mirrored = points * [1.0, -1.0] + [0.0, 640.0]
    check(mirrored, IMAGE_HEIGHT)  # labels kept: "left" corners now on the right
    relabelled = mirrored.reshape(17, 4, 2)[:, [1, 0, 3, 2]].reshape(68, 2)
    check(relabelled, IMAGE_HEIGHT)
    a = math.radians(7.0)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = points.mean(axis=0)
    check((points - centre) @ rotation.T + centre, IMAGE_HEIGHT)


def _with(points: np.ndarray, index: int, value) -> np.ndarray:
    changed = points.copy()
    changed[index] = value
    return changed


def _hide(points: np.ndarray, vertebrae) -> np.ndarray:
    """``points`` with every corner of ``vertebrae`` (indices 0..16) set to NaN (not visible)."""
    changed = points.copy()
    for v in vertebrae:
        changed[4 * v : 4 * v + 4] = np.nan
    return changed


def _flat_vertebra(points: np.ndarray, vertebra: int) -> np.ndarray:
    changed = points.copy()
    k = 4 * vertebra
    changed[k + 1] = changed[k]  # top-right onto top-left
    changed[k + 3] = changed[k + 2]  # bottom-right onto bottom-left
    return changed


def _closed_loop(points: np.ndarray) -> np.ndarray:
    changed = points.copy()
    shift = (changed[0] + changed[1]) / 2 - (changed[66] + changed[67]) / 2
    changed[64:68] += shift  # L5 moved so its bottom midpoint meets T1's top midpoint
    return changed


SPINE = make_spine(C_TILTS)


@pytest.mark.parametrize(
    ("landmarks", "height", "message", "spacing"),
    [
        (SPINE[:67], IMAGE_HEIGHT, "68", None),
        (np.zeros((68, 3)), IMAGE_HEIGHT, "68", None),
        (SPINE.ravel(), IMAGE_HEIGHT, "68", None),
        ([["a", "b"]] * 68, IMAGE_HEIGHT, "numeric", None),
        (_with(SPINE, 0, [np.inf, 3.0]), IMAGE_HEIGHT, "T1-top-left", None),
        (np.full((68, 2), np.inf), IMAGE_HEIGHT, "and 63 more", None),
        (np.full((68, 2), np.nan), IMAGE_HEIGHT, "at least two vertebrae", None),
        (_hide(SPINE, range(1, 17)), IMAGE_HEIGHT, "1 found", None),
        (SPINE, IMAGE_HEIGHT, "spacing", (1.0, 0.0)),
        (SPINE, IMAGE_HEIGHT, "spacing", (1.0, np.nan)),
        (SPINE, IMAGE_HEIGHT, "spacing", "wide"),
        (SPINE, 0.0, "image height", None),
        (SPINE, -10.0, "image height", None),
        (SPINE, float("nan"), "image height", None),
        (SPINE, float("inf"), "image height", None),
        (SPINE, "tall", "image height", None),
        (np.full((68, 2), 5.0), IMAGE_HEIGHT, "zero extent", None),
        (
            np.column_stack([np.arange(68.0), 2 * np.arange(68.0) + 1]),
            IMAGE_HEIGHT,
            "one line",
            None,
        ),
        (_flat_vertebra(SPINE, 6), IMAGE_HEIGHT, "T7", None),
        (_closed_loop(SPINE), IMAGE_HEIGHT, "coincide", None),
    ],
)
def test_degenerate_input_raises(landmarks, height, message, spacing):
    with pytest.raises(CobbError, match=message):
        cobb_angles(landmarks, height, spacing)


def test_cobb_error_is_a_value_error_and_unknown_curve_is_rejected():
    assert issubclass(CobbError, ValueError)
    result = cobb_angles(SPINE, IMAGE_HEIGHT)
    with pytest.raises(ValueError, match="unknown curve"):
        result.curve("XX")


def test_public_names():
    assert napari_nfdp.cobb_angles is core_cobb.cobb_angles
    assert cobb_angles is core_cobb.cobb_angles
    assert CobbResult is core_cobb.CobbResult


def test_partial_spine_cut_below_l2_measures_the_visible_vertebrae():
    points = _hide(SPINE, [14, 15, 16])  # a chest film: L3-L5 below the film
    result = cobb_angles(points, IMAGE_HEIGHT)
    assert result.left_out == (14, 15, 16)
    assert result.curve_type == "C"
    np.testing.assert_allclose(angles(result)[:2], [19.0, 42.0], atol=1e-9)
    assert spans(result)["MT"] == (4, 13)
    # L2 (-20) is the last visible vertebra: TL has no vertebra below it to measure
    tl = result.curve("TL")
    assert not tl.measured and result.measured_angle("TL") is None
    assert (
        result.describe("TL")
        == "TL not measured: no curve below L2 in the visible spine (it ends at L2)"
    )
    assert (
        result.describe("MT")
        == "MT 42 deg, T5-L2 (may continue below L2, the last visible vertebra)"
    )


def test_partial_spine_hidden_t1_and_a_gap():
    points = _hide(SPINE, [0, 8])  # T1 hidden, T9 with a missing corner
    points[4 * 8 + 1] = SPINE[4 * 8 + 1]  # only three of T9's corners are NaN: still left out
    result = cobb_angles(points, IMAGE_HEIGHT)
    assert result.left_out == (0, 8)
    # PT now runs from T2 (6) to T5 (22): 16 deg, and may continue above T2
    assert spans(result) == {"PT": (1, 4), "MT": (4, 13), "TL": (13, 16)}
    np.testing.assert_allclose(angles(result), [16.0, 42.0, 18.0], atol=1e-9)
    assert (
        result.describe("PT")
        == "PT 16 deg, T2-T5 (may continue above T2, the first visible vertebra)"
    )
    assert result.describe("TL") == "TL 18 deg, L2-L5"


def test_whole_spine_with_degenerate_curve_is_not_reported_as_zero():
    tilts = [22, 16, 10, 4, 0, -4, -8, -12, -16, -20, -14, -6, -2, 0, 0, 0, 0]
    result = cobb_angles(make_spine(tilts), IMAGE_HEIGHT)
    assert spans(result)["PT"] == (0, 0)
    assert result.pt == 0.0  # the challenge's number is kept for scoring
    assert result.measured_angle("PT") is None
    assert result.describe("PT") == "PT not measured: no curve above T1"
    assert result.describe("MT") == "MT 42 deg, T1-T10"


def test_straight_spine_main_curve_is_not_measured():
    result = cobb_angles(make_spine([0.0] * 17), IMAGE_HEIGHT)
    assert result.describe("MT") == "MT not measured: the visible vertebrae are all parallel"


def test_physical_spacing_changes_angles_on_non_square_pixels():
    points = SPINE
    square = cobb_angles(points, IMAGE_HEIGHT, spacing=(0.2, 0.2))
    np.testing.assert_allclose(angles(square), angles(cobb_angles(points, IMAGE_HEIGHT)))
    wide = cobb_angles(points, IMAGE_HEIGHT, spacing=(0.1, 0.2))  # pixels twice as wide as tall
    expected = cobb_angles(points * [0.1, 0.2], IMAGE_HEIGHT * 0.1)
    np.testing.assert_allclose(angles(wide), angles(expected), atol=1e-9)
    assert not np.allclose(angles(wide), angles(square))
    # the lines to draw stay in pixels
    np.testing.assert_allclose(wide.curve("MT").lines, square.curve("MT").lines)
