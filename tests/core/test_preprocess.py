import numpy as np
import pytest

from napari_nfdp.core import preprocess as pp

INPUT = (128, 64)


@pytest.mark.parametrize("shape", [(2500, 1000), (300, 700), (40, 33), (64, 32)])
@pytest.mark.parametrize("fraction", [0.8, 0.9, 1.0])
def test_fit_round_trip_and_fits_inside(shape, fraction):
    fit = pp.fit_matrix(shape, INPUT, fraction)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1, (50, 2)) * np.array(shape)
    back = pp.apply_affine(np.linalg.inv(fit), pp.apply_affine(fit, points))
    np.testing.assert_allclose(back, points, atol=1e-6)
    # The image extent (pixel edges) lands inside the input, filling `fraction` on one axis.
    corners = pp.apply_affine(fit, np.array([[-0.5, -0.5], [shape[0] - 0.5, shape[1] - 0.5]]))
    assert np.all(corners[0] >= -0.5 - 1e-9)
    assert np.all(corners[1] <= np.array(INPUT) - 0.5 + 1e-9)
    extent = (corners[1] - corners[0]) / np.array(INPUT)
    assert extent.max() == pytest.approx(fraction)
    # Centred.
    np.testing.assert_allclose(corners.mean(axis=0), (np.array(INPUT) - 1) / 2, atol=1e-9)


def test_apply_affine_keeps_nan_rows():
    points = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]])
    out = pp.apply_affine(pp.fit_matrix((100, 50), INPUT, 0.9), points)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()


def _blob(shape, centre, radius):
    rows, cols = np.indices(shape)
    distance2 = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2
    return np.exp(-distance2 / (2 * radius**2))


def _centroid(image):
    weights = np.clip(image - image.min(), 0, None)
    rows, cols = np.indices(image.shape)
    return np.array([(weights * rows).sum(), (weights * cols).sum()]) / weights.sum()


@pytest.mark.parametrize("shape", [(1000, 430), (90, 150)])
def test_prepared_input_puts_bright_dot_where_apply_affine_says(shape):
    centre = np.array([shape[0] * 0.37 + 0.3, shape[1] * 0.61 - 0.2])
    radius = max(shape) / 60
    image = (1000 + 30000 * _blob(shape, centre, radius)).astype(np.uint16)
    inputs, fit = pp.prepare_input(image, INPUT, 0.9)
    assert inputs.shape == INPUT and inputs.dtype == np.float32
    expected = pp.apply_affine(fit, centre[None])[0]
    np.testing.assert_allclose(_centroid(inputs), expected, atol=0.15)


def test_warp_general_affine_and_padding():
    shape = (80, 60)
    centre = np.array([30.2, 41.7])
    image = _blob(shape, centre, 2.5).astype(np.float32)
    angle = np.deg2rad(20)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    matrix = pp.fit_matrix(shape, INPUT, 0.7) @ rotation
    matrix = np.array([[1, 0, 10], [0, 1, 5], [0, 0, 1.0]]) @ matrix
    out = pp.warp(image, matrix, INPUT)
    expected = pp.apply_affine(matrix, centre[None])[0]
    peak = _centroid(np.where(out > 0.05, out, 0))
    np.testing.assert_allclose(peak, expected, atol=0.15)
    assert out[0, 0] == pp.PAD_VALUE


def test_downsample_geometry_matches_block_matrix():
    image = np.arange(23 * 17, dtype=np.float32).reshape(23, 17)
    small, factor = pp.downsample_for(image, (8, 8), 1.0)
    assert factor == 2 and small.shape == (11, 8)
    # A linear ramp is preserved by block means: small[d] == image[block_matrix @ d].
    original = pp.apply_affine(pp.block_matrix(factor), np.array([[3.0, 5.0]]))[0]
    assert small[3, 5] == pytest.approx(original[0] * 17 + original[1])


def test_downsample_keeps_at_least_target_resolution():
    grey = np.zeros((2500, 1000), np.float32)
    small, factor = pp.downsample_for(grey, (512, 256), 0.9)
    scale = pp.fit_matrix(grey.shape, (512, 256), 0.9)[0, 0]
    ratio = small.shape[0] / (grey.shape[0] * scale)
    assert factor == 5 and 1.0 <= ratio <= 2.0
    assert pp.downsample_for(np.zeros((100, 50), np.float32), (512, 256), 0.9)[1] == 1


def test_normalise_intensity():
    rng = np.random.default_rng(1)
    grey = rng.normal(1000, 100, (300, 200)).astype(np.float32)
    out = pp.normalise_intensity(grey)
    assert out.dtype == np.float32 and out.min() >= -0.5 and out.max() <= 0.5
    assert abs(float(np.median(out))) < 0.05
    np.testing.assert_array_equal(pp.normalise_intensity(np.full((40, 40), 7.0)), 0.0)
    dot = np.zeros((64, 64), np.float32)
    dot[10, 10] = 5.0
    assert pp.normalise_intensity(dot)[10, 10] == pytest.approx(0.5)


def test_to_grey_float32_colour_and_dtypes():
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[..., 1] = 200
    grey = pp.to_grey_float32(rgb)
    assert grey.shape == (40, 50) and grey.dtype == np.float32
    assert grey[0, 0] == pytest.approx(200 * pp.LUMA_WEIGHTS[1], rel=1e-5)
    rgba = np.concatenate([rgb, np.full((40, 50, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(pp.to_grey_float32(rgba), grey)
    assert pp.to_grey_float32(np.ones((40, 40), bool)).dtype == np.float32
    assert pp.to_grey_float32(np.ones((40, 40), np.int64)).dtype == np.float32


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 50)), "empty"),
        (np.zeros((50, 0, 3)), "empty"),
        (np.zeros(100), "shape"),
        (np.zeros((40, 40, 2)), "shape"),
        (np.zeros((2, 40, 40, 3)), "shape"),
        (np.zeros((31, 400)), "too small"),
        (np.zeros((400, 20, 3)), "too small"),
        (np.full((40, 40), np.nan), "NaN"),
        (np.array([[np.inf] * 40] * 40), "NaN or infinite"),
        (np.full((40, 40, 3), -np.inf, np.float16), "NaN or infinite"),
        (np.full((40, 40), 1e300), "too large to analyse"),
        (np.zeros((32, 8000)), "too elongated"),
        (np.zeros((2100, 100, 3), np.uint8), "too elongated"),
        (np.full((40, 40), "a"), "real numbers"),
        (np.zeros((40, 40), complex), "real numbers"),
    ],
)
def test_bad_images_raise_image_error(image, message):
    with pytest.raises(pp.ImageError, match=message):
        pp.to_grey_float32(image)


def test_huge_finite_values_are_not_called_nan():
    image = np.full((40, 40), 1e300)
    image[0, 0] = np.nan
    with pytest.raises(pp.ImageError, match="NaN or infinite"):
        pp.to_grey_float32(image)
    image[0, 0] = 0.0
    with pytest.raises(pp.ImageError, match="largest magnitude 1e\\+300") as info:
        pp.to_grey_float32(image)
    assert "NaN" not in str(info.value)


def test_wide_but_allowed_range_and_shape_are_analysed():
    rng = np.random.default_rng(3)
    image = rng.normal(0, 1e25, (40, 40 * int(pp.MAX_ASPECT)))  # finite, 20:1
    inputs, _ = pp.prepare_input(image, INPUT, 0.9)
    assert np.isfinite(inputs).all() and inputs.std() > 0


def test_downsampling_never_empties_a_side():
    """Even a tiny fit fraction keeps at least one row and column (no IndexError later)."""
    grey = np.ones((32, 640), np.float32)
    small, factor = pp.downsample_for(grey, (512, 256), 0.01)
    assert factor == 32 and small.shape == (1, 20)
    inputs, _ = pp.prepare_input(grey, (512, 256), 0.01)
    assert inputs.shape == (512, 256) and np.isfinite(inputs).all()
