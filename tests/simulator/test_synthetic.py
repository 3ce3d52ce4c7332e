"""Tests of the synthetic AP spine radiograph generator."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core.cobb import cobb_angles
from napari_nfdp.simulator import SyntheticRadiograph, synthesize_spine

SMALL = (512, 256)


def _vertebrae(result: SyntheticRadiograph) -> np.ndarray:
    return result.landmarks.reshape(17, 4, 2)


def _main_cobb(result: SyntheticRadiograph) -> float:
    angles = cobb_angles(result.landmarks, result.image.shape[0])
    return max(angles.pt, angles.mt, angles.tl)


def _lateral_deviation(result: SyntheticRadiograph) -> tuple[float, float]:
    """Largest deviation of the endplate midpoints to each side of the T1-L5 chord (fraction)."""
    points = result.landmarks
    midpoints = (points[0::2] + points[1::2]) / 2.0
    chord = midpoints[-1] - midpoints[0]
    length = float(np.hypot(*chord))
    deviation = (midpoints - midpoints[0]) @ np.array([-chord[1], chord[0]]) / length**2
    return float(deviation.max()), float(-deviation.min())


def _patch_mean(image: np.ndarray, point: np.ndarray) -> float:
    row, col = np.rint(point).astype(int)
    return float(image[row - 1 : row + 2, col - 1 : col + 2].astype(float).mean())


def test_same_seed_gives_identical_radiograph():
    a = synthesize_spine(7, shape=SMALL)
    b = synthesize_spine(7, shape=SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert a.spacing == b.spacing
    assert a.curve_type == b.curve_type
    assert a.seed == 7


def test_different_seeds_differ():
    a = synthesize_spine(1, shape=SMALL)
    b = synthesize_spine(2, shape=SMALL)
    assert not np.array_equal(a.image, b.image)
    assert not np.allclose(a.landmarks, b.landmarks)


def test_default_size_is_a_realistic_film():
    result = synthesize_spine(3)
    height, width = result.image.shape
    assert 2000 <= height <= 2700 and 900 <= width <= 1200
    assert result.image.dtype == np.uint16
    assert result.image.max() > result.image.min()
    assert 0.1 <= result.spacing[0] == result.spacing[1] <= 0.35
    assert result.landmarks.shape == (68, 2) and result.landmarks.dtype == np.float64


@pytest.mark.parametrize("shape", [(256, 128), (512, 256), (300, 420), (1000, 400)])
def test_requested_shape_and_landmarks_inside(shape):
    for seed in range(3):
        result = synthesize_spine(seed, shape=shape)
        assert result.image.shape == shape
        assert result.image.dtype == np.uint16
        assert np.isfinite(result.landmarks).all()
        assert (result.landmarks >= 0).all()
        assert (result.landmarks[:, 0] <= shape[0] - 1).all()
        assert (result.landmarks[:, 1] <= shape[1] - 1).all()


def test_intensity_range_varies_between_films():
    maxima = {int(synthesize_spine(seed, shape=(256, 128)).image.max()) for seed in range(8)}
    assert len(maxima) > 4
    assert max(maxima) > 4095  # some films use more than 12 bits


def test_landmarks_follow_aasce_order():
    for seed in range(12):
        v = _vertebrae(synthesize_spine(seed, shape=SMALL))
        tl, tr, bl, br = v[:, 0], v[:, 1], v[:, 2], v[:, 3]
        assert (tl[:, 1] < tr[:, 1]).all() and (bl[:, 1] < br[:, 1]).all()  # left < right
        assert (tl[:, 0] < bl[:, 0]).all() and (tr[:, 0] < br[:, 0]).all()  # top above bottom
        top_mid = (tl + tr) / 2.0
        bottom_mid = (bl + br) / 2.0
        assert (top_mid[1:, 0] > bottom_mid[:-1, 0]).all()  # T1 .. L5 from top to bottom
        heights = bottom_mid[:, 0] - top_mid[:, 0]
        widths = np.hypot(*(tr - tl).T)
        assert heights[-5:].mean() > heights[:5].mean()  # growing caudally
        assert widths[-5:].mean() > 1.3 * widths[:5].mean()  # lumbar much wider


def test_vertebral_bodies_brighter_than_discs():
    for seed in range(6):
        for shape in (SMALL, (1024, 512)):
            result = synthesize_spine(seed, shape=shape)
            v = _vertebrae(result)
            differences = []
            for i in range(16):
                body = _patch_mean(result.image, v[i].mean(axis=0))
                disc = (v[i, 2:].mean(axis=0) + v[i + 1, :2].mean(axis=0)) / 2.0
                across = (v[i, 3] - v[i, 2]) / 4.0  # a quarter of the width, off the midline
                for side in (-1.0, 1.0):
                    differences.append(body - _patch_mean(result.image, disc + side * across))
            differences = np.array(differences)
            assert (differences > 0).mean() >= 0.85, (seed, shape)
            assert np.median(differences) > 0


def test_straight_spines_have_small_cobb_angles():
    for seed in range(10):
        result = synthesize_spine(seed, shape=SMALL, curve="straight")
        assert result.curve_type == "straight"
        assert _main_cobb(result) < 12.0


def test_c_curves_are_single_sided_and_scoliotic():
    angles = []
    for seed in range(10):
        result = synthesize_spine(seed, shape=SMALL, curve="C")
        assert result.curve_type == "C"
        angles.append(_main_cobb(result))
        major, minor = sorted(_lateral_deviation(result), reverse=True)
        assert minor < 0.35 * major
    assert min(angles) > 8.0
    assert max(angles) > 30.0
    assert max(angles) < 70.0


def test_s_curves_cross_the_chord():
    angles = []
    for seed in range(10):
        result = synthesize_spine(seed, shape=SMALL, curve="S")
        assert result.curve_type == "S"
        angles.append(_main_cobb(result))
        right, left = _lateral_deviation(result)
        assert min(right, left) > 0.2 * max(right, left)
        assert min(right, left) > 0.004
        assert cobb_angles(result.landmarks, SMALL[0]).curve_type == "S"
    assert min(angles) > 8.0


def test_max_cobb_bounds_the_curve():
    for seed in range(8):
        result = synthesize_spine(seed, shape=SMALL, curve="C", max_cobb=20.0)
        assert _main_cobb(result) < 28.0


def test_random_curve_types_are_mixed():
    kinds = {synthesize_spine(seed, shape=(256, 128)).curve_type for seed in range(12)}
    assert kinds == {"straight", "C", "S"}


@pytest.mark.parametrize(
    "kwargs",
    [{"curve": "J"}, {"shape": (100, 50)}, {"max_cobb": -1.0}, {"max_cobb": 120.0}],
)
def test_bad_arguments_are_rejected(kwargs):
    kwargs.setdefault("shape", SMALL)
    with pytest.raises(ValueError):
        synthesize_spine(0, **kwargs)
