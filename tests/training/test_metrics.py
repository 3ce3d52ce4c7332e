"""Tests of the evaluation metrics (radial error, MRE, SDR, SMAPE, summary)."""

import math

import numpy as np
import pytest

from training.metrics import mre, radial_errors, sdr, smape, summarise

NAN = float("nan")

GT = np.array([[10.0, 10.0], [20.0, 5.0], [NAN, NAN], [0.0, 0.0]])
PRED = np.array([[13.0, 14.0], [20.0, 5.0], [1.0, 1.0], [NAN, 2.0]])


def test_radial_errors_in_pixels_with_missing_points():
    errors = radial_errors(PRED, GT)
    assert errors.shape == (4,)
    assert errors[:2].tolist() == [5.0, 0.0]
    assert np.isnan(errors[2]) and np.isnan(errors[3])


def test_radial_errors_with_anisotropic_spacing():
    # (3 rows, 4 cols) at (0.5 mm, 2 mm) per pixel -> (1.5 mm, 8 mm)
    errors = radial_errors(PRED[:1], GT[:1], spacing=(0.5, 2.0))
    assert errors[0] == pytest.approx(math.hypot(1.5, 8.0))


def test_radial_errors_batched_and_shape_checks():
    errors = radial_errors(np.stack([PRED, PRED]), np.stack([GT, GT]))
    assert errors.shape == (2, 4)
    with pytest.raises(ValueError):
        radial_errors(PRED, GT[:3])
    with pytest.raises(ValueError):
        radial_errors(PRED[:, :1], GT[:, :1])


def test_mre_skips_missing_points():
    assert mre(PRED, GT) == pytest.approx(2.5)
    assert mre(PRED, GT, spacing=(0.1, 0.1)) == pytest.approx(0.25)
    assert math.isnan(mre(PRED[2:], GT[2:]))


def test_sdr_counts_finite_errors_within_radius():
    errors = np.array([0.5, 2.0, 2.4, 3.1, 9.0, NAN, NAN])
    rates = sdr(errors, (2.0, 2.5, 3.0, 4.0))
    assert rates == {2.0: 40.0, 2.5: 60.0, 3.0: 60.0, 4.0: 80.0}
    assert all(math.isnan(v) for v in sdr(np.array([NAN]), [1.0]).values())
    assert sdr(np.array([[1.0, 3.0], [NAN, 5.0]]), [2]) == {2.0: 100.0 / 3}


def test_smape_matches_hand_computation():
    pred = np.array([[10.0, 20.0, 5.0], [0.0, 0.0, 0.0], [30.0, 0.0, 10.0]])
    gt = np.array([[12.0, 18.0, 5.0], [0.0, 0.0, 0.0], [20.0, 0.0, 10.0]])
    # image 1: 4 / 70; image 2: both sums zero -> 0; image 3: 10 / 70
    expected = 100.0 * (4 / 70 + 0.0 + 10 / 70) / 3
    assert smape(pred, gt) == pytest.approx(expected)
    assert smape(pred[0], gt[0]) == pytest.approx(100.0 * 4 / 70)
    assert smape(pred, pred) == 0.0


def test_smape_single_angle_columns_and_nan_images():
    pred = np.array([[10.0, 20.0, 5.0], [NAN, 1.0, 1.0]])
    gt = np.array([[12.0, 18.0, 5.0], [3.0, 1.0, 1.0]])
    assert smape(pred, gt) == pytest.approx(100.0 * 4 / 70)
    assert smape(pred[:1, [0]], gt[:1, [0]]) == pytest.approx(100.0 * 2 / 22)
    assert math.isnan(smape(pred[1:], gt[1:]))


def test_smape_rejects_bad_input():
    with pytest.raises(ValueError):
        smape(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        smape(np.array([[-1.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 3.0]]))


def test_summarise():
    summary = summarise(np.array([1.0, 2.0, 6.0, NAN]), radii=(2, 2.5, 10))
    assert summary == {
        "mre": pytest.approx(3.0),
        "count": 3,
        "sdr_2": pytest.approx(200 / 3),
        "sdr_2.5": pytest.approx(200 / 3),
        "sdr_10": 100.0,
    }
    empty = summarise(np.array([NAN]))
    assert math.isnan(empty["mre"]) and empty["count"] == 0
