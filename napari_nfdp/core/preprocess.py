"""Image preprocessing for the network and the exact map back to image pixels.

Geometry: every transform is a 3x3 homogeneous matrix acting on column vectors
``[row, col, 1]``; pixel centres sit at integer coordinates. The inference path is
``to_grey_float32 -> downsample_for -> normalise_intensity -> warp`` with the fit matrix of
the original image composed with the block-reduction matrix, so that predictions map back
to original pixels with ``apply_affine(np.linalg.inv(fit), points)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

PAD_VALUE = -0.5
MIN_SIDE = 32
#: The longest side may be at most this many times the shortest (a long film is about 3:1).
MAX_ASPECT = 20.0
#: Float images whose values exceed this magnitude are refused (float32 arithmetic overflows).
MAX_MAGNITUDE = 1e30
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
# ITU-R BT.709 luma weights for colour -> grey.
LUMA_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
_PERCENTILE_SAMPLES = 1 << 14
_BAND_PIXELS = 1 << 22


class ImageError(ValueError):
    """An image the localizer cannot work on, with a message saying why (wrong dtype or shape,
    empty, smaller than MIN_SIDE, more elongated than MAX_ASPECT, NaN / infinite values or
    values beyond MAX_MAGNITUDE)."""


def to_grey_float32(image: np.ndarray) -> np.ndarray:
    """Validate an image and return its raw intensities as a 2-D float32 array.

    Accepts 2-D grey arrays of any real dtype and (H, W, 1|3|4) arrays (colour is converted to
    luminance, alpha ignored). Anything the localizer cannot analyse raises :class:`ImageError`
    before any work is done on it.
    """
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.float32)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ImageError(f"image must hold real numbers, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        colour = True
    elif array.ndim == 2:
        colour = False
    else:
        raise ImageError(
            f"image must be 2-D grey or (H, W, 3|4) colour, got shape {tuple(array.shape)}"
        )
    if array.size == 0:
        raise ImageError(f"image is empty (shape {tuple(array.shape)})")
    height, width = array.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"image is too small ({height}x{width} px); each side needs at least {MIN_SIDE} px"
        )
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageError(
            f"image is too elongated ({height}x{width} px, "
            f"{max(height, width) / min(height, width):.0f}:1); the longer side may be at most "
            f"{MAX_ASPECT:g} x the shorter"
        )
    if np.issubdtype(array.dtype, np.floating):
        values = array[..., :3] if colour else array
        low, high = float(values.min()), float(values.max())  # NaN and inf show up here
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ImageError("image contains NaN or infinite values")
        largest = max(abs(low), abs(high))
        if largest > MAX_MAGNITUDE:
            raise ImageError(
                f"image values are too large to analyse (largest magnitude {largest:.3g}, "
                f"limit {MAX_MAGNITUDE:g}); rescale the image"
            )
    if colour:  # a band of rows at a time: no float32 copy of every channel of a large film
        grey = np.empty((height, width), dtype=np.float32)
        step = max(1, _BAND_PIXELS // width)
        for top in range(0, height, step):
            band = array[top : top + step, :, :3].astype(np.float32, copy=False)
            grey[top : top + step] = band @ LUMA_WEIGHTS
    else:
        grey = array.astype(np.float32, copy=False)
    return grey


def normalise_intensity(grey: np.ndarray) -> np.ndarray:
    """Scale intensities robustly to [-0.5, 0.5] using the 0.5 / 99.5 percentiles.

    Percentiles are taken on a strided subsample; values outside them are clipped. A constant
    image gives zeros.
    """
    grey = np.asarray(grey, dtype=np.float32)
    step = max(1, math.isqrt(grey.size // _PERCENTILE_SAMPLES))
    low, high = np.percentile(grey[::step, ::step], [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:  # mostly constant: fall back to the full range
        low, high = float(grey.min()), float(grey.max())
    if high <= low:
        return np.zeros(grey.shape, dtype=np.float32)
    out = (grey - np.float32(low)) * np.float32(1.0 / (high - low))
    out -= np.float32(0.5)
    np.clip(out, -0.5, 0.5, out=out)
    return out


def _fit_scale(image_shape: tuple[int, int], input_size: tuple[int, int], fraction: float) -> float:
    height, width = image_shape
    in_height, in_width = input_size
    return min(fraction * in_height / height, fraction * in_width / width)


def downsample_for(
    grey: np.ndarray, input_size: tuple[int, int], fraction: float
) -> tuple[np.ndarray, int]:
    """Block-mean reduce ``grey`` by the largest integer factor that keeps it at least as large
    as (and so at most 2x) the size it will be warped to.

    Returns ``(smaller image, factor)``; factor 1 means unchanged. Rows/columns that do not fill
    a whole block at the bottom/right are dropped; use :func:`block_matrix` for the geometry.
    """
    grey = np.asarray(grey, dtype=np.float32)
    scale = _fit_scale(grey.shape, input_size, fraction)
    # Never reduce a side to nothing, however elongated the image.
    factor = max(1, min(math.floor(1.0 / scale + 1e-9), *grey.shape))
    return block_reduce(grey, factor), factor


def block_reduce(grey: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` blocks (float32); partial blocks at the bottom/right are
    dropped. :func:`block_matrix` maps the reduced pixels back to the original."""
    grey = np.asarray(grey, dtype=np.float32)
    if factor == 1:
        return grey
    height, width = grey.shape[0] // factor, grey.shape[1] // factor
    cropped = grey[: height * factor, : width * factor]
    rows = cropped.reshape(height, factor, width * factor).sum(axis=1, dtype=np.float32)
    blocks = rows.reshape(height, width, factor).sum(axis=2, dtype=np.float32)
    blocks *= np.float32(1.0 / (factor * factor))
    return blocks


def reduce_to_long_side(grey: np.ndarray, max_side: int | None) -> tuple[np.ndarray, int]:
    """Block-mean reduce ``grey`` by the smallest integer factor that brings its long side to at
    most ``max_side`` (None: unchanged); returns ``(image, factor)``, see :func:`block_matrix`."""
    if max_side is None or max(grey.shape) <= max_side:
        return np.asarray(grey, dtype=np.float32), 1
    factor = math.ceil(max(grey.shape) / max_side)
    return block_reduce(grey, factor), factor


def block_matrix(factor: int) -> np.ndarray:
    """3x3 matrix mapping pixel coordinates of a ``factor``-reduced image to the original."""
    offset = (factor - 1) / 2.0
    return np.array(
        [[factor, 0.0, offset], [0.0, factor, offset], [0.0, 0.0, 1.0]], dtype=np.float64
    )


def fit_matrix(
    image_shape: tuple[int, int], input_size: tuple[int, int], fraction: float
) -> np.ndarray:
    """3x3 matrix mapping image pixel coordinates to network-input pixel coordinates.

    Uniform scale so that the image fits inside ``fraction`` of the input, centred.
    """
    height, width = image_shape[:2]
    in_height, in_width = input_size
    scale = _fit_scale((height, width), input_size, fraction)
    return np.array(
        [
            [scale, 0.0, (in_height - 1) / 2.0 - scale * (height - 1) / 2.0],
            [0.0, scale, (in_width - 1) / 2.0 - scale * (width - 1) / 2.0],
            [0.0, 0.0, 1.0],
        ],
        dtype=np.float64,
    )


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine to (..., 2) (row, col) points; NaN rows stay NaN."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (2,):
        raise ValueError(f"points must have shape (..., 2), got {points.shape}")
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def warp(image: np.ndarray, matrix: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Resample ``image`` into the network input: ``output[p] = image[inv(matrix) @ p]``.

    Bilinear; samples outside the image get ``PAD_VALUE``. Returns float32 (H_in, W_in).
    """
    inverse = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    linear = inverse[:2, :2]
    if linear[0, 1] == 0.0 and linear[1, 0] == 0.0:
        linear = np.diag(linear)  # scipy's faster separable path for axis-aligned maps
    return ndimage.affine_transform(
        np.asarray(image, dtype=np.float32),
        linear,
        offset=inverse[:2, 2],
        output_shape=tuple(input_size),
        output=np.float32,
        order=1,
        mode="constant",
        cval=PAD_VALUE,
        prefilter=False,
    )


def prepare_input(
    image: np.ndarray, input_size: tuple[int, int], fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """The whole inference preprocessing for one image.

    Returns ``(network input float32 (H_in, W_in), fit matrix)`` where the fit matrix maps pixel
    coordinates of the original ``image`` to input pixel coordinates.
    """
    grey = to_grey_float32(image)
    small, factor = downsample_for(grey, input_size, fraction)
    fit = fit_matrix(grey.shape, input_size, fraction)
    warped = warp(normalise_intensity(small), fit @ block_matrix(factor), input_size)
    return warped, fit
