"""Augmentation: landmarks follow the image, visibility, inference equivalence, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core.network import ModelConfig
from napari_nfdp.core.preprocess import apply_affine, prepare_input
from training.augment import OUTSIDE_LIMIT, AugmentConfig, augment, random_affine
from training.datasets import Sample

INPUT = (96, 48)
DOTS = np.array([[30, 30], [30.5, 70], [100, 25.3], [99, 75], [170.7, 30], [170, 69.5]])


def _config(k: int) -> ModelConfig:
    return ModelConfig(variant="regression", num_landmarks=k, input_size=INPUT, fit_fraction=0.9)


def _dot_sample(landmarks: np.ndarray = DOTS, shape=(200, 100)) -> Sample:
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    image = 0.2 * rows / shape[0] + 0.1  # a gentle background gradient
    for r, c in landmarks[np.isfinite(landmarks).all(axis=1)]:
        image += np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 4.0**2))
    # A brighter block between the dots takes the top percentile, so the dots are not clipped.
    image[shape[0] * 3 // 10 : shape[0] * 4 // 10, shape[1] * 4 // 10 : shape[1] * 6 // 10] = 3.0
    return Sample(
        image=image.astype(np.float32), landmarks=landmarks.copy(), spacing=None, name="dots"
    )


def _geometric_only(**changes) -> AugmentConfig:
    off = {"gamma_prob": 0.0, "low_contrast_prob": 0.0, "invert_prob": 0.0}
    return AugmentConfig(**{**off, "blur_prob": 0.0, "noise_prob": 0.0, **changes})


def _peak_near(image: np.ndarray, point: np.ndarray, radius: int = 3) -> np.ndarray:
    """Sub-pixel maximum (argmax + parabola per axis) of ``image`` near ``point``."""
    r0, c0 = np.round(point).astype(int)
    window = image[r0 - radius : r0 + radius + 1, c0 - radius : c0 + radius + 1]
    r, c = np.unravel_index(np.argmax(window), window.shape)
    r, c = r0 - radius + r, c0 - radius + c
    peak = []
    for before, centre, after in (
        (image[r - 1, c], image[r, c], image[r + 1, c]),
        (image[r, c - 1], image[r, c], image[r, c + 1]),
    ):
        curvature = before - 2 * centre + after
        peak.append(0.5 * (before - after) / curvature if curvature < 0 else 0.0)
    return np.array([r + peak[0], c + peak[1]])


@pytest.mark.parametrize("blur", [0.0, 1.0])
def test_bright_dots_stay_under_their_landmarks(blur):
    sample, config = _dot_sample(), _config(len(DOTS))
    # A centred blur keeps each dot's peak in place; 1.5 px keeps neighbouring dots apart.
    cfg = _geometric_only(blur_prob=blur, blur_sigma_max=1.5, rotation_prob=0.8, shift_prob=0.8)
    checked = 0
    for seed in range(40):
        inputs, target, visible = augment(sample, np.random.default_rng(seed), config, cfg)
        assert inputs.shape == INPUT and inputs.dtype == np.float32
        assert target.shape == (len(DOTS), 2) and visible.shape == (len(DOTS),)
        points = (target.astype(float) + 0.5) * INPUT
        for point in points[visible == 1]:
            if not (3 <= point[0] < INPUT[0] - 4 and 3 <= point[1] < INPUT[1] - 4):
                continue  # too close to the input border to search around it
            assert np.linalg.norm(_peak_near(inputs, point) - point) <= 0.25
            checked += 1
    assert checked > 100


def test_regression_targets_keep_landmarks_off_the_input():
    """Field-of-view awareness: a landmark off the film (or cropped away) is still learned,
    at its true position outside the input; only a missing one has no target."""
    landmarks = np.vstack([DOTS, [[np.nan, np.nan], [-40.0, 50.0], [0.5, 50.0]]])
    sample, config = _dot_sample(landmarks), _config(len(landmarks))
    for seed in range(30):
        _, target, known = augment(sample, np.random.default_rng(seed), config, AugmentConfig())
        assert known.dtype == np.float32 and set(np.unique(known)) <= {0.0, 1.0}
        assert known[-3] == 0 and known[-2] == 1 and known[-1] == 1
        assert target[-2, 0] < target[-1, 0]  # above the top row, where it really is
        np.testing.assert_array_equal(target[known == 0], 0.0)
        assert np.all(np.abs(target[known == 1]) <= OUTSIDE_LIMIT)
    _, target, known = augment(sample, np.random.default_rng(0), config, train=False)
    fit = prepare_input(sample.image, config.input_size, config.fit_fraction)[1]
    expected = apply_affine(fit, landmarks[-2:-1]) / INPUT - 0.5
    np.testing.assert_allclose(target[-2], expected[0], atol=1e-6)
    assert target[-2, 0] < -0.5  # off the film: a target outside the input


def test_heatmap_targets_mask_landmarks_off_the_input():
    landmarks = np.vstack([DOTS, [[np.nan, np.nan], [-40.0, 50.0], [0.5, 50.0]]])
    sample = _dot_sample(landmarks)
    config = ModelConfig(
        variant="heatmap", num_landmarks=len(landmarks), input_size=INPUT, fit_fraction=0.9
    )
    cropped_edge = 0
    for seed in range(30):
        _, target, visible = augment(sample, np.random.default_rng(seed), config, AugmentConfig())
        assert visible[-3] == 0 and visible[-2] == 0  # missing, outside the image
        np.testing.assert_array_equal(target[visible == 0], 0.0)
        assert np.all(np.abs(target[visible == 1]) <= 0.5)  # inside the input
        cropped_edge += visible[-1] == 0
    assert 0 < cropped_edge < 30  # the point on the top row is cropped away only sometimes


def test_eval_transform_is_the_inference_path():
    sample, config = _dot_sample(), _config(len(DOTS))
    inputs, target, visible = augment(sample, np.random.default_rng(0), config, train=False)
    expected, fit = prepare_input(sample.image, config.input_size, config.fit_fraction)
    np.testing.assert_array_equal(inputs, expected)
    points = apply_affine(fit, sample.landmarks)
    np.testing.assert_allclose(target, points / INPUT - 0.5, atol=1e-6)
    assert visible.all()
    # Back through the inverse fit (what the Localizer does) gives the image landmarks.
    back = apply_affine(np.linalg.inv(fit), (target.astype(float) + 0.5) * INPUT)
    np.testing.assert_allclose(back, sample.landmarks, atol=1e-3)
    # No augmentation at all is the same transform.
    plain = augment(sample, np.random.default_rng(5), config, AugmentConfig.disabled())
    np.testing.assert_allclose(plain[0], inputs, atol=1e-6)
    np.testing.assert_allclose(plain[1], target, atol=1e-6)


def test_deterministic_by_seed():
    sample, config = _dot_sample(), _config(len(DOTS))
    a = augment(sample, np.random.default_rng(7), config, AugmentConfig())
    b = augment(sample, np.random.default_rng(7), config, AugmentConfig())
    c = augment(sample, np.random.default_rng(8), config, AugmentConfig())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_inverted_polarity_negates_the_image_only():
    sample, config = _dot_sample(), _config(len(DOTS))
    plain = augment(sample, np.random.default_rng(3), config, _geometric_only())
    inverted = augment(sample, np.random.default_rng(3), config, _geometric_only(invert_prob=1.0))
    np.testing.assert_array_equal(plain[1], inverted[1])
    inside = plain[0] > -0.45
    np.testing.assert_allclose(inverted[0][inside], -plain[0][inside], atol=1e-6)
    assert np.all(inverted[0][plain[0] == -0.5] == -0.5)  # padding stays the pad value


def test_default_config_outputs_are_finite_and_bounded():
    sample, config = _dot_sample(), _config(len(DOTS))
    for seed in range(10):
        inputs, target, _ = augment(sample, np.random.default_rng(seed), config)
        assert np.isfinite(inputs).all() and np.abs(inputs).max() < 2.0
        assert np.isfinite(target).all()


def test_flip_swaps_left_and_right_spine_corners():
    rng = np.random.default_rng(0)
    centres = np.stack([np.linspace(20, 180, 17), np.full(17, 50.0)], axis=1)
    offsets = np.array([[-3, -10], [-3, 10], [3, -10], [3, 10]], dtype=float)  # TL TR BL BR
    spine = (centres[:, None, :] + offsets[None]).reshape(68, 2)
    sample = Sample(
        image=rng.random((200, 100), dtype=np.float32), landmarks=spine, spacing=None, name="s"
    )
    cfg = _geometric_only(flip_prob=1.0, rotation_prob=0.0, shift_prob=0.0, crop_min=1.0)
    _, target, visible = augment(sample, rng, _config(68), cfg)
    assert visible.all()
    corners = target.reshape(17, 4, 2)
    assert np.all(corners[:, 0, 1] < corners[:, 1, 1])  # top-left still left of top-right
    assert np.all(corners[:, 2, 1] < corners[:, 3, 1])
    with pytest.raises(ValueError, match="flip"):
        augment(_dot_sample(), rng, _config(len(DOTS)), cfg)


def test_random_affine_is_the_fit_without_augmentation():
    from napari_nfdp.core.preprocess import fit_matrix

    matrix = random_affine(
        np.random.default_rng(0), (200, 100), INPUT, 0.9, AugmentConfig.disabled()
    )
    np.testing.assert_allclose(matrix, fit_matrix((200, 100), INPUT, 0.9), atol=1e-12)
    scaled = random_affine(
        np.random.default_rng(0),
        (200, 100),
        INPUT,
        0.9,
        AugmentConfig(scale_min=1.2, scale_max=1.2),
    )
    assert np.sqrt(abs(np.linalg.det(scaled[:2, :2]))) == pytest.approx(1.2 * matrix[0, 0])
