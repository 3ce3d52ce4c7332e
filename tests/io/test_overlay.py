"""Overlay pictures: the angle text is drawn in the top-left corner, and only with angles."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core.cobb import cobb_angles
from napari_nfdp.io.overlay import CURVE_COLOURS, TEXT_COLOUR, render_overlay
from napari_nfdp.simulator import synthesize_spine

CORNER = (slice(0, 30), slice(None))  # above the first landmark of the film below
TEXT = (slice(0, 50), slice(None))  # where three lines of text reach on that film


@pytest.fixture(scope="module")
def film():
    case = synthesize_spine(3, shape=(600, 260))
    assert case.landmarks[:, 0].min() > 40
    return case.image, case.landmarks


def _has_colour(picture: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((np.abs(picture.astype(int) - colour).sum(axis=2) < 60).any())


def test_angle_text_is_drawn_only_with_angles(film):
    image, landmarks = film
    cobb = cobb_angles(landmarks, image.shape[0])
    grey = render_overlay(image, np.full_like(landmarks, np.nan))  # the film alone
    plain = render_overlay(image, landmarks)
    with_angles = render_overlay(image, landmarks, cobb)

    np.testing.assert_array_equal(plain[CORNER], grey[CORNER])  # no text without angles
    assert (with_angles[CORNER] != grey[CORNER]).any(axis=2).sum() > 500
    for name in ("PT", "MT", "TL"):  # one line per curve, in the curve's colour
        assert _has_colour(with_angles[TEXT], CURVE_COLOURS[name])
        assert not _has_colour(plain[TEXT], CURVE_COLOURS[name])
    below = slice(60, None)  # below the text the picture is the same but for the Cobb lines
    lines = (with_angles[below] != plain[below]).any(axis=2)
    assert 0 < lines.sum() < 0.1 * lines.size


def test_a_note_is_drawn_without_angles(film):
    image, landmarks = film
    grey = render_overlay(image, np.full_like(landmarks, np.nan))
    noted = render_overlay(image, landmarks, notes=["No spine found? Check the points."])
    assert _has_colour(noted[CORNER], TEXT_COLOUR)
    assert not _has_colour(grey[CORNER], TEXT_COLOUR)
    empty = render_overlay(image, landmarks, notes=[""])
    np.testing.assert_array_equal(empty, render_overlay(image, landmarks))
