"""The bundled default model: present, compact, trained (not random), and honest about itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_nfdp import Localizer, cobb_angles
from napari_nfdp.core.checkpoint import DEFAULT_MODEL_PATH, load_checkpoint
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.images import read_image

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def test_bundled_model_is_a_compact_self_describing_regression_nfdp_model():
    assert DEFAULT_MODEL_PATH.stat().st_size < 27e6
    ckpt = load_checkpoint(DEFAULT_MODEL_PATH)
    assert ckpt.config.variant == "regression" and ckpt.config.input_size == (512, 256)
    assert ckpt.landmark_names == SPINE_LANDMARK_NAMES
    assert ckpt.training["config"]["loss"] == "nfdp"
    assert ckpt.training["data"]["train_images"] >= 1000


def test_bundled_model_finds_the_spine_of_held_out_samples():
    loc = Localizer.load(device="cpu")
    errors = []
    for path in sorted(SAMPLES.glob("spine_synthetic_*[0-9].png")):
        image, _ = read_image(path)
        truth = np.loadtxt(path.with_name(path.stem + "_truth.csv"), delimiter=",")
        pred = loc.predict(image)
        errors.append(np.linalg.norm(pred.landmarks - truth, axis=1).mean() / image.shape[0])
        assert (pred.sigma > 0).all()
        # vertebrae come out in anatomical order and give measurable Cobb angles
        centres = pred.landmarks.reshape(17, 4, 2).mean(axis=1)
        assert (np.diff(centres[:, 0]) > 0).all()
        cobb_angles(pred.landmarks, image.shape[0])
    assert len(errors) == 2
    # mean error in % of image height; an untrained network is off by ~24 % on these films
    assert 100 * np.mean(errors) < 5.0, errors


def test_bundled_model_knows_the_field_of_view_of_a_chest_film():
    """A chest film cut below L2: the vertebrae on the film are found, those below it are
    said to be off the film, and the film is not mistaken for one without a spine."""
    from napari_nfdp.core.detection import detect

    path = SAMPLES / "spine_projected_02_chest.png"
    image, _ = read_image(path)
    truth = np.loadtxt(path.with_name(path.stem + "_truth.csv"), delimiter=",")
    points, on = truth[:, :2], truth[:, 2].astype(bool)
    result = detect(Localizer.load(device="cpu"), image)
    assert result.status == "ok", result.doubt
    pred = result.prediction
    error = np.linalg.norm(pred.landmarks - points, axis=1)
    assert 100 * error[on].mean() / image.shape[0] < 5.0  # the old model: 11 % on such films
    assert (pred.visible == on).mean() > 0.9
    assert not pred.visible[~on].any() or (~pred.visible[~on]).mean() > 0.8


def test_bundled_model_stores_its_usual_sigma_in_vertebra_heights():
    metrics = load_checkpoint(DEFAULT_MODEL_PATH).metrics
    assert 0 < metrics["val_sigma_vertebrae"] < 100
    assert metrics["calibration_images"] >= 50


def test_bundled_model_refines_the_corners_of_the_sample_films():
    """Both stages: stage 2 is calibrated (its usual sigma, its error on the calibration films
    below stage 1's) and brings the corners of the sample films closer than stage 1 alone."""
    ckpt = load_checkpoint(DEFAULT_MODEL_PATH)
    assert ckpt.refiner is not None
    assert 0 < ckpt.metrics["refined_sigma_vertebrae"] < ckpt.metrics["val_sigma_vertebrae"]
    assert ckpt.metrics["calibration_mre_pct"] < ckpt.metrics["stage1_calibration_mre_pct"]
    loc = Localizer.load(device="cpu")
    both, first = [], []
    for path in sorted(SAMPLES.glob("spine_*_truth.csv")):
        image, _ = read_image(path.with_name(path.name.replace("_truth.csv", ".png")))
        truth = np.loadtxt(path, delimiter=",")
        on = truth[:, 2].astype(bool) if truth.shape[1] > 2 else np.ones(len(truth), bool)
        refiner = loc.refiner
        for errors in (both, first):
            pred = loc.predict(image)
            errors.append(np.linalg.norm(pred.landmarks - truth[:, :2], axis=1)[on].mean())
            loc.refiner = None
        loc.refiner = refiner
    assert len(both) == 4
    assert np.mean(both) < 0.8 * np.mean(first), (both, first)
