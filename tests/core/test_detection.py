"""The one detect path: blank check, prediction, plausibility, Cobb angles (a real model)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core import detection
from napari_nfdp.core.detection import detect, measure_cobb
from napari_nfdp.core.localizer import Localizer
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.simulator import synthesize_spine


@pytest.fixture(scope="module")
def localizer():
    return Localizer.load(device="cpu")  # the bundled spine model


def test_a_spine_film_is_ok_with_angles(localizer):
    case = synthesize_spine(7, shape=(1024, 512))
    result = detect(localizer, case.image, model_id="bundled")
    assert result.status == "ok" and result.doubt is None and result.error is None
    assert result.prediction.landmarks.shape == (68, 2)
    assert result.cobb is not None and result.model_id == "bundled"
    assert result.image_shape == (1024, 512)


def test_blank_and_unreadable_images_are_errors(localizer):
    blank = detect(localizer, np.full((300, 200), 7, dtype=np.uint16))
    assert blank.status == "error" and "blank" in blank.error and blank.prediction is None
    tiny = detect(localizer, np.zeros((3, 3)))
    assert tiny.status == "error"


def test_an_implausible_film_keeps_its_points_but_has_no_angles(localizer, monkeypatch):
    monkeypatch.setattr(detection, "NO_SPINE_SIGMA_FACTOR", 1e-6)
    case = synthesize_spine(7, shape=(1024, 512))
    result = detect(localizer, case.image)
    assert result.status == "implausible" and result.doubt.startswith("No spine found?")
    assert result.prediction is not None and result.cobb is None


def test_measure_cobb_says_why_not():
    assert measure_cobb(np.zeros((5, 2)), ("a",) * 5, 100)[1].startswith("Cobb angles need")
    none = np.full((68, 2), np.nan)
    result, note = measure_cobb(none, SPINE_LANDMARK_NAMES, 100)
    assert result is None and note.startswith("No Cobb angles: ")


def _spine_prediction(visible_vertebrae) -> detection.Prediction:
    from napari_nfdp.core.localizer import Prediction

    centres = np.column_stack([100 + 50 * np.arange(17), np.full(17, 200.0)])
    corners = np.array([[-15, -20], [-15, 20], [15, -20], [15, 20]], dtype=float)
    points = (centres[:, None, :] + corners[None]).reshape(68, 2)
    visible = np.repeat(np.isin(np.arange(17), visible_vertebrae), 4)
    return Prediction(
        points, np.full((68, 2), 2.0), SPINE_LANDMARK_NAMES, visible, np.zeros(68, bool)
    )


def test_plausibility_accepts_a_cut_film_and_refuses_gaps():
    shape = (1000, 400)
    assert detection.plausibility_warning(_spine_prediction(range(14)), shape) is None  # chest
    gap = detection.plausibility_warning(_spine_prediction([0, 1, 2, 3, 5, 6]), shape)
    assert "not one continuous stretch" in gap
    few = detection.plausibility_warning(_spine_prediction([0, 1, 2]), shape)
    assert "Only 3 vertebrae" in few


def test_on_film():
    from napari_nfdp.core.localizer import on_film

    points = np.array([[0.0, 0.0], [99.9, 49.9], [100.0, 10.0], [-0.1, 3.0], [np.nan, 1.0]])
    np.testing.assert_array_equal(on_film(points, (100, 50)), [True, True, False, False, False])


@pytest.mark.parametrize("name", ["RG1_UNCI.dcm", "RG3_UNCR.dcm"])  # a chest, an ankle (CR)
def test_real_films_without_a_spine_are_implausible(localizer, name):
    from pydicom.data import get_testdata_file

    from napari_nfdp.io.images import read_image

    image, _ = read_image(get_testdata_file(name))
    result = detect(localizer, image)
    assert result.status == "implausible" and result.doubt.startswith("No spine found?")
    assert result.cobb is None


def test_review_flags_a_film_that_is_unsure_everywhere():
    from napari_nfdp.core.localizer import review_mask

    sigma = np.full((68, 2), 2.0)
    sigma[5] = 9.0  # far above the film's median
    assert review_mask(sigma, None).tolist() == [i == 5 for i in range(68)]
    # every point 10 px where the model usually says 2 px: all flagged
    everywhere = np.full((68, 2), 10.0)
    assert not review_mask(everywhere, None).any()  # the film's median alone misses it
    assert review_mask(everywhere, 2.0).all()
    assert not review_mask(everywhere, 10.0).any()  # where 10 px is what it usually says


def test_usual_sigma_follows_the_size_of_the_vertebrae():
    from napari_nfdp.core.localizer import usual_sigma_px, vertebra_height

    spine = _spine_prediction(range(17)).landmarks
    height = vertebra_height(spine, SPINE_LANDMARK_NAMES)
    assert height and height > 0
    metrics = {"val_sigma_vertebrae": 0.5, "val_sigma_pct": 2.0}
    assert usual_sigma_px(metrics, spine, SPINE_LANDMARK_NAMES, 1000) == 0.5 * height
    # the same spine drawn twice as large (a lumbar film): twice the usual sigma
    assert usual_sigma_px(metrics, 2 * spine, SPINE_LANDMARK_NAMES, 1000) == 1.0 * height
    # checkpoints from before the per-vertebra figure: percent of the image height
    assert usual_sigma_px({"val_sigma_pct": 2.0}, spine, SPINE_LANDMARK_NAMES, 1000) == 20.0
    assert usual_sigma_px({}, spine, SPINE_LANDMARK_NAMES, 1000) is None


def test_angles_leave_out_the_vertebrae_below_the_film(localizer):
    """A chest film cut below L2: detect (the CLI's path) measures only what is on the film,
    as the dock does, so the CSV and the dock agree and L3-L5 guesses never make an angle."""
    from pathlib import Path

    from napari_nfdp.io.images import read_image

    path = Path(__file__).resolve().parents[2] / "sample_data" / "spine_projected_02_chest.png"
    image, _ = read_image(path)
    result = detect(localizer, image)
    pred = result.prediction
    assert result.status == "ok" and not pred.visible.all()
    on_film = np.where(pred.visible[:, None], pred.landmarks, np.nan)
    expected, _ = measure_cobb(on_film, pred.landmark_names, image.shape[0])
    everything, _ = measure_cobb(pred.landmarks, pred.landmark_names, image.shape[0])
    assert result.cobb.left_out == expected.left_out and result.cobb.left_out
    assert [result.cobb.describe(n) for n in ("PT", "MT", "TL")] == [
        expected.describe(n) for n in ("PT", "MT", "TL")
    ]
    assert not everything.left_out  # measuring every point would have used the guesses
