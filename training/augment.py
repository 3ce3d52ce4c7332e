"""Training augmentation: one random affine per sample composed with the inference fit, one warp.

Geometry follows the NFDP reference recipe (random crop 90-100 %, scale U(0.75, 1.3), rotation
up to 30 deg with p=0.5, shift up to 15 % with p=0.5); photometric changes (brightness /
contrast jitter, gamma, low contrast, inverted polarity, blur, noise) make the model robust to
the exposure and export settings of real films. ``train=False`` is exactly the inference
preprocessing of :func:`napari_nfdp.core.preprocess.prepare_input`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
from scipy import ndimage

from napari_nfdp.core.preprocess import (
    apply_affine,
    block_matrix,
    downsample_for,
    fit_matrix,
    normalise_intensity,
    prepare_input,
    warp,
)
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from training.datasets import Sample

OUTSIDE_LIMIT = 1.0  # learn off-input landmarks up to half an input beyond each edge


class InputGeometry(Protocol):
    """What augmentation needs from a model config (``ModelConfig`` satisfies it)."""

    input_size: tuple[int, int]
    fit_fraction: float
    variant: str


@dataclass
class AugmentConfig:
    """Random augmentation settings; probabilities are per sample, intensities act on the
    normalised image (range about [-0.5, 0.5])."""

    crop_min: float = 0.9  # each side keeps U(crop_min, 1) of the image
    scale_min: float = 0.75
    scale_max: float = 1.3
    rotation_deg: float = 30.0
    rotation_prob: float = 0.5
    shift: float = 0.15  # of the input size, per axis
    shift_prob: float = 0.5
    flip_prob: float = 0.0  # horizontal flip; swaps left/right spine corners (68-point schema only)
    brightness: float = 0.1  # added U(-b, b)
    contrast: float = 0.2  # multiplied by U(1 - c, 1 + c)
    gamma_prob: float = 0.3
    gamma_max: float = 1.6  # gamma log-uniform in [1 / g, g]
    low_contrast_prob: float = 0.15
    low_contrast_min: float = 0.25  # contrast multiplied by U(low_contrast_min, 0.6)
    invert_prob: float = 0.2
    blur_prob: float = 0.2
    blur_sigma_max: float = 4.0  # in network-input pixels (about 0.8 % of a 512 height)
    noise_prob: float = 0.3
    noise_std_max: float = 0.05

    @classmethod
    def disabled(cls) -> AugmentConfig:
        """No augmentation: ``augment(train=True)`` then equals the inference transform."""
        return cls(
            crop_min=1.0,
            scale_min=1.0,
            scale_max=1.0,
            **{f.name: 0.0 for f in fields(cls) if f.name.endswith("_prob")},
            brightness=0.0,
            contrast=0.0,
        )


def _translation(row: float, col: float) -> np.ndarray:
    matrix = np.eye(3)
    matrix[:2, 2] = (row, col)
    return matrix


def random_affine(
    rng: np.random.Generator,
    image_shape: tuple[int, int],
    input_size: tuple[int, int],
    fraction: float,
    cfg: AugmentConfig,
) -> np.ndarray:
    """3x3 matrix from image pixels to input pixels: the inference fit followed by a random
    scale, rotation, horizontal flip and shift about the input centre."""
    in_height, in_width = input_size
    scale = rng.uniform(cfg.scale_min, cfg.scale_max)
    angle = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    if rng.random() >= cfg.rotation_prob:
        angle = 0.0
    shift = rng.uniform(-cfg.shift, cfg.shift, size=2) * (in_height, in_width)
    if rng.random() >= cfg.shift_prob:
        shift[:] = 0.0
    flip = -1.0 if rng.random() < cfg.flip_prob else 1.0
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    linear = np.array([[cos, -sin * flip, 0.0], [sin, cos * flip, 0.0], [0.0, 0.0, 1.0]])
    centre = ((in_height - 1) / 2.0, (in_width - 1) / 2.0)
    around = _translation(centre[0] + shift[0], centre[1] + shift[1]) @ linear
    return (
        around
        @ _translation(-centre[0], -centre[1])
        @ fit_matrix(image_shape, input_size, fraction)
    )


def _spine_flip_order() -> np.ndarray:
    """Landmark order after a horizontal flip: each vertebra swaps its left and right corners."""
    swap = {"left": "right", "right": "left"}
    index = {name: i for i, name in enumerate(SPINE_LANDMARK_NAMES)}
    order = []
    for name in SPINE_LANDMARK_NAMES:
        vertebra, corner = name.split("-", 1)
        vertical, side = corner.split("-")
        order.append(index[f"{vertebra}-{vertical}-{swap[side]}"])
    return np.array(order)


_SPINE_FLIP = _spine_flip_order()


def photometric(
    image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, px: float
) -> np.ndarray:
    """Random intensity changes of a normalised image; ``px`` = image pixels per input pixel."""
    if rng.random() < cfg.gamma_prob:
        gamma = math.exp(rng.uniform(-1.0, 1.0) * math.log(cfg.gamma_max))
        image = np.clip(image + 0.5, 0.0, 1.0) ** np.float32(gamma) - np.float32(0.5)
    if cfg.contrast or cfg.brightness:
        gain = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast)
        image = image * np.float32(gain) + np.float32(rng.uniform(-cfg.brightness, cfg.brightness))
    if rng.random() < cfg.low_contrast_prob:
        image = image * np.float32(rng.uniform(cfg.low_contrast_min, 0.6))
    if rng.random() < cfg.invert_prob:
        image = -image
    if rng.random() < cfg.blur_prob:
        image = ndimage.gaussian_filter(image, rng.uniform(0.5, cfg.blur_sigma_max) * px)
    if rng.random() < cfg.noise_prob:
        std = rng.uniform(0.2, 1.0) * cfg.noise_std_max
        image = image + rng.normal(0.0, std, size=image.shape).astype(np.float32)
    return image.astype(np.float32, copy=False)


def _inside(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rows of ``points`` within the pixel centres of an image of ``shape`` (NaN: False)."""
    with np.errstate(invalid="ignore"):
        low = (points >= 0.0).all(axis=1)
        high = (points <= np.asarray(shape, dtype=np.float64) - 1.0).all(axis=1)
    return low & high


def augment(
    sample: Sample,
    rng: np.random.Generator,
    model_config: InputGeometry,
    cfg: AugmentConfig | None = None,
    train: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn a sample into ``(input (H_in, W_in) float32, target (K, 2) float32, known (K,))``.

    ``target`` holds normalised (row, col) input coordinates (r_in / H_in - 0.5, ...), and 0
    where ``known`` is 0: a missing landmark, one too far off the input to learn
    (:data:`OUTSIDE_LIMIT`), or, for the heatmap variant (which cannot place a point off its
    heatmap), any landmark outside the crop or the input. The regression variant learns
    landmarks off the film too, at their true positions: a field-of-view-aware localizer.
    """
    cfg = cfg or AugmentConfig()
    input_size = tuple(model_config.input_size)
    fraction = model_config.fit_fraction
    keep_outside = getattr(model_config, "variant", "regression") == "regression"
    landmarks = np.asarray(sample.landmarks, dtype=np.float64)
    if not train:
        inputs, matrix = prepare_input(sample.image, input_size, fraction)
        return _targets(inputs, apply_affine(matrix, landmarks), input_size, keep_outside)

    height, width = sample.image.shape
    crop_h = max(1, round(height * rng.uniform(cfg.crop_min, 1.0)))
    crop_w = max(1, round(width * rng.uniform(cfg.crop_min, 1.0)))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    crop = sample.image[top : top + crop_h, left : left + crop_w]
    points = landmarks - (top, left)
    in_crop = _inside(points, crop.shape)

    matrix = random_affine(rng, crop.shape, input_size, fraction, cfg)
    fit_scale = fit_matrix(crop.shape, input_size, fraction)[0, 0]
    zoom = math.sqrt(abs(np.linalg.det(matrix[:2, :2]))) / fit_scale
    small, factor = downsample_for(crop, input_size, fraction * zoom)
    small_to_input = matrix @ block_matrix(factor)
    px = 1.0 / math.sqrt(abs(np.linalg.det(small_to_input[:2, :2])))
    image = photometric(normalise_intensity(small), rng, cfg, px)
    inputs = warp(image, small_to_input, input_size)

    input_points = apply_affine(matrix, points)
    if not keep_outside:
        input_points[~in_crop] = np.nan
    if np.linalg.det(matrix[:2, :2]) < 0:  # flipped: left and right swap names
        if len(input_points) != len(_SPINE_FLIP):
            raise ValueError(
                "horizontal flip needs a left/right landmark pairing; only the 68-point spine "
                f"schema has one (got {len(input_points)} landmarks): set flip_prob=0"
            )
        input_points = input_points[_SPINE_FLIP]
    return _targets(inputs, input_points, input_size, keep_outside)


def _targets(
    inputs: np.ndarray,
    input_points: np.ndarray,
    input_size: tuple[int, int],
    keep_outside: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    normalised = input_points / np.asarray(input_size) - 0.5
    if keep_outside:
        with np.errstate(invalid="ignore"):
            known = (np.abs(normalised) <= OUTSIDE_LIMIT).all(axis=1)
    else:
        known = _inside(input_points, input_size)
    target = np.where(known[:, None], normalised, 0.0)
    return inputs, target.astype(np.float32), known.astype(np.float32)
