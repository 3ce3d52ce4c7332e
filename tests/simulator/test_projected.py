"""Tests of the projecting (3-D, cone-beam) spine film simulator."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core.cobb import cobb_angles
from napari_nfdp.simulator.conebeam import ConeBeam, Loft, line_integrals
from napari_nfdp.simulator.projected import FIELDS, SimulatedFilm, simulate_projected
from napari_nfdp.simulator.solids import Solids
from napari_nfdp.simulator.spine3d import T1, build_spine

SMALL = (384, 192)


def _grey(film: SimulatedFilm) -> np.ndarray:
    """Display grey, bone bright, whatever the photometric interpretation."""
    image = film.image.astype(float)
    return image.max() - image if film.photometric == "MONOCHROME1" else image


def _main_cobb(film: SimulatedFilm) -> float:
    result = cobb_angles(film.landmarks, film.image.shape[0])
    return max(result.pt, result.mt, result.tl)


def test_same_seed_gives_the_same_film():
    a = simulate_projected(11, shape=SMALL)
    b = simulate_projected(11, shape=SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.visible, b.visible)
    assert (a.field, a.curve_type, a.spacing, a.photometric) == (
        b.field,
        b.curve_type,
        b.spacing,
        b.photometric,
    )
    assert a.seed == 11
    c = simulate_projected(12, shape=SMALL)
    assert not np.array_equal(a.image, c.image)


def test_output_types_and_shapes():
    film = simulate_projected(4, shape=SMALL)
    assert film.image.shape == SMALL and film.image.ndim == 2
    assert film.image.dtype in (np.uint8, np.uint16)
    assert film.image.max() > film.image.min()
    assert film.landmarks.shape == (68, 2) and film.landmarks.dtype == np.float64
    assert film.visible.shape == (68,) and film.visible.dtype == bool
    assert film.field in FIELDS
    assert film.photometric in ("MONOCHROME1", "MONOCHROME2")
    assert film.spacing[0] == film.spacing[1] > 0
    assert film.pedicles.shape == (17, 2, 2)
    with pytest.raises(ValueError):
        simulate_projected(0, shape=SMALL, field="skull")
    with pytest.raises(ValueError):
        simulate_projected(0, shape=(64, 32))


def test_landmarks_are_cone_beam_projections_of_the_endplate_rims():
    rng = np.random.default_rng(3)
    spine = build_spine(rng, "straight", 0.0, per_degree=0.0)
    corners = spine.landmarks()  # (68, 3) patient frame
    beam = ConeBeam(np.array([0.0, 200.0, 1500.0]), np.array([-150.0, -100.0]), 0.5, (900, 600))
    world = corners + [0.0, 0.0, 200.0]
    pixels = beam.project(world)
    # a straight, unrotated spine: left and right corners mirror about the endplate centre
    centres = np.array([[v.top[0], v.bottom[0]] for v in spine.vertebrae[T1:]]).reshape(-1, 3)
    middle = beam.project(centres + [0.0, 0.0, 200.0])
    left, right = pixels[0::2], pixels[1::2]
    np.testing.assert_allclose((left[:, 1] + right[:, 1]) / 2, middle[:, 1], atol=0.05)
    assert np.all(right[:, 1] - left[:, 1] > 20)
    rows = pixels.reshape(17, 4, 2)[:, :, 0]
    assert np.all(np.diff(rows.mean(axis=1)) > 0)  # T1 .. L5 run down the film
    assert np.all(rows[:, 2:].mean(axis=1) > rows[:, :2].mean(axis=1))  # bottom below top
    # the projection is the central projection through the source
    k = beam.source[2] / (beam.source[2] - world[:, 2])
    x = beam.source[0] + (world[:, 0] - beam.source[0]) * k
    np.testing.assert_allclose(pixels[:, 1], (x - beam.origin[0]) / beam.pitch)


def test_straight_film_landmarks_are_ordered_and_symmetric():
    film = simulate_projected(
        5, shape=(512, 256), field="full", curve="straight", cobb=0.0, rotation=0.0
    )
    left, right = film.landmarks[0::2], film.landmarks[1::2]  # per endplate, T1 top .. L5 bottom
    assert np.all(right[:, 1] - left[:, 1] > 5)
    middle = (left + right) / 2
    # a straight spine: the midpoints align (to within the slight turn of the patient, which
    # shows the sagittal curves a little from the side)
    fit = np.polyfit(middle[:, 0], middle[:, 1], 1)
    assert np.abs(np.polyval(fit, middle[:, 0]) - middle[:, 1]).max() < 2.0 / film.spacing[0]
    assert np.all(np.diff(middle[:, 0]) > 0)  # T1 .. L5 run down the film


def test_larger_source_distance_magnifies_less():
    near = simulate_projected(
        6, shape=SMALL, field="full", source_distance=1000.0, spine_distance=250.0
    )
    far = simulate_projected(
        6, shape=SMALL, field="full", source_distance=1800.0, spine_distance=250.0
    )
    assert near.magnification == pytest.approx(1000.0 / 750.0)
    assert far.magnification == pytest.approx(1800.0 / 1550.0)

    def width_mm(film: SimulatedFilm) -> float:
        corners = film.landmarks.reshape(17, 4, 2)
        return float(np.mean(corners[:, 1, 1] - corners[:, 0, 1])) * film.spacing[1]

    assert width_mm(far) < width_mm(near)
    assert width_mm(far) / width_mm(near) == pytest.approx(
        far.magnification / near.magnification, rel=0.03
    )


def test_chest_film_cuts_off_the_lower_lumbar_spine():
    film = simulate_projected(8, shape=(420, 400), field="chest")
    rows, cols = film.image.shape
    inside = (
        (film.landmarks[:, 0] >= 0)
        & (film.landmarks[:, 0] <= rows - 1)
        & (film.landmarks[:, 1] >= 0)
        & (film.landmarks[:, 1] <= cols - 1)
    )
    np.testing.assert_array_equal(film.visible, inside)
    assert not film.visible[14 * 4 :].any()  # L3..L5 lie below the film
    assert (film.landmarks[14 * 4 :, 0] > rows - 1).all()
    assert film.visible[: 10 * 4].all()  # the upper and middle thoracic spine is on it


def test_axial_rotation_moves_the_pedicles_to_the_concave_side():
    kwargs = dict(shape=(512, 256), field="full", curve="C", cobb=50.0)
    flat = simulate_projected(9, rotation=0.0, **kwargs)
    turned = simulate_projected(9, rotation=0.6, **kwargs)

    def pedicle_shift(film: SimulatedFilm) -> np.ndarray:
        corners = film.landmarks.reshape(17, 4, 2)
        body = corners[:, :, 1].mean(axis=1)
        return film.pedicles[:, :, 1].mean(axis=1) - body

    corners = turned.landmarks.reshape(17, 4, 2)
    mid = corners.mean(axis=1)
    chord = mid[-1] - mid[0]
    along = (mid[:, 0] - mid[0, 0]) / chord[0]
    deviation = mid[:, 1] - (mid[0, 1] + along * chord[1])
    apex = int(np.argmax(np.abs(deviation)))
    concave = -np.sign(deviation[apex])
    assert abs(pedicle_shift(flat)[apex]) < 2.0
    assert pedicle_shift(turned)[apex] * concave > 2.0


def test_projected_cobb_grows_with_the_requested_curve():
    angles = [
        _main_cobb(simulate_projected(21, shape=(512, 256), field="full", curve="C", cobb=c))
        for c in (10.0, 30.0, 50.0)
    ]
    assert angles[0] < angles[1] < angles[2]
    assert angles[2] == pytest.approx(50.0, abs=10.0)


def test_bone_is_brighter_than_the_soft_tissue_beside_it():
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        film = simulate_projected(13, shape=(512, 256), field="lumbar", photometric=photometric)
        grey = _grey(film)
        corners = film.landmarks.reshape(17, 4, 2)
        bone, soft = [], []
        for v in range(12, 16):  # L1..L4
            centre = corners[v].mean(axis=0)
            width = corners[v, 1, 1] - corners[v, 0, 1]
            r, c = np.rint(centre).astype(int)
            bone.append(grey[r - 2 : r + 3, c - 2 : c + 3].mean())
            for side in (-1, 1):
                cc = int(round(c + side * 1.6 * width))
                if 3 <= cc < grey.shape[1] - 3:
                    soft.append(grey[r - 2 : r + 3, cc - 2 : cc + 3].mean())
        assert np.mean(bone) > np.mean(soft)
        stored = film.image.astype(float)
        r, c = np.rint(corners[14].mean(axis=0)).astype(int)
        if photometric == "MONOCHROME1":  # bone is stored dark
            assert stored[r, c] < np.median(stored)


def test_chord_lengths_are_exact():
    beam = ConeBeam(np.array([0.0, 0.0, 1000.0]), np.array([-50.0, -50.0]), 1.0, (101, 101))
    solids = Solids()
    solids.ellipsoid([0.0, 0.0, 200.0], np.eye(3), [30.0, 30.0, 30.0], 1.0)
    image = line_integrals(solids.packed(), [], beam)
    source, centre = beam.source, np.array([0.0, 0.0, 200.0])
    for r, c in [(50, 50), (50, 70), (75, 40), (20, 55)]:
        pixel = np.array([c - 50.0, r - 50.0, 0.0])
        d = (pixel - source) / np.linalg.norm(pixel - source)
        b = (source - centre) @ d
        disc = b * b - ((source - centre) @ (source - centre) - 900.0)
        assert image[r, c] == pytest.approx(2 * np.sqrt(max(disc, 0.0)), abs=1e-3)
    # a shell (cortex) leaves only the outer layer; a prism loft equals the cylinder solid
    shell = Solids()
    shell.cylinder([0, -30, 300], [0, 30, 300], (20.0, 10.0), 1.0, cortex=(2.0, 0.0))
    assert line_integrals(shell.packed(), [], beam)[50, 50] == pytest.approx(4.0, abs=1e-3)
    y = np.arange(-60.0, 61.0, 2.0)
    loft = Loft(
        y,
        np.zeros_like(y),
        np.full_like(y, 300.0),
        np.full_like(y, 20.0),
        np.full_like(y, 10.0),
        1.0,
    )
    empty = Solids().packed()
    np.testing.assert_allclose(
        line_integrals(empty, [loft], beam)[40:61, 40:61],
        line_integrals(_prism(), [], beam)[40:61, 40:61],
        atol=1e-3,
    )


def _prism():
    """The solid elliptic cylinder that the test loft describes."""
    solid = Solids()
    solid.cylinder([0, -60, 300], [0, 60, 300], (20.0, 10.0), 1.0)
    return solid.packed()
