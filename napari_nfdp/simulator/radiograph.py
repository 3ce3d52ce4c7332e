"""Synthetic AP (frontal) spine radiographs with exact vertebral-corner landmarks.

The scene is built in a patient "world" frame (millimetres, ``(row, col)``, row pointing to
the feet, origin at the centre of the T1 top endplate) and mapped to pixels by one similarity
transform (random scale, rotation and shift). Bones are rasterised at a reduced "mid"
resolution with anti-aliased polygon fills, smooth soft tissue at half of that, and only the
final upsampling, noise and quantisation run at full resolution. The 68 landmarks are the
corners of the drawn T1..L5 bodies, in AASCE order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_nfdp.simulator.anatomy import _Body, _build_spine, _fit_view, _render_bones
from napari_nfdp.simulator.film import _add_film_artefacts, _display, _finish, _landmark_box
from napari_nfdp.simulator.raster import _Painter, _upsample
from napari_nfdp.simulator.soft_tissue import _render_soft

CURVE_TYPES: tuple[str, ...] = ("straight", "C", "S")
MIN_SHAPE = (128, 64)


@dataclass(frozen=True)
class SyntheticRadiograph:
    """A synthetic radiograph and its exact landmarks.

    ``landmarks`` are (68, 2) float64 (row, col) pixel coordinates of the T1..L5 body corners in
    AASCE order; ``spacing`` is (row, col) mm per pixel.
    """

    image: np.ndarray
    landmarks: np.ndarray
    spacing: tuple[float, float]
    seed: int
    curve_type: str


def synthesize_spine(
    seed: int,
    *,
    shape: tuple[int, int] | None = None,
    curve: str | None = None,
    max_cobb: float = 60.0,
) -> SyntheticRadiograph:
    """Render a random AP spine radiograph (uint16, bone bright) with its 68 landmarks.

    ``shape`` defaults to a random realistic film size (about 2000-2700 x 900-1200 px);
    ``curve`` is "straight", "C", "S" or None (random); the main Cobb angle of a C or S curve
    is drawn up to ``max_cobb`` degrees. The same seed always gives the same radiograph.
    """
    if curve is not None and curve not in CURVE_TYPES:
        raise ValueError(f"curve must be one of {CURVE_TYPES} or None, got {curve!r}")
    if not 0.0 <= max_cobb <= 90.0:
        raise ValueError(f"max_cobb must be within [0, 90] degrees, got {max_cobb}")
    rng = np.random.default_rng(seed)
    if shape is None:
        shape = (int(rng.integers(2000, 2701)), int(rng.integers(900, 1201)))
    shape = (int(shape[0]), int(shape[1]))
    if shape[0] < MIN_SHAPE[0] or shape[1] < MIN_SHAPE[1]:
        raise ValueError(f"shape must be at least {MIN_SHAPE}, got {shape}")
    if curve is None:
        curve = str(rng.choice(CURVE_TYPES, p=[0.25, 0.4, 0.35]))

    spine = _build_spine(rng, curve, max_cobb)
    view = _fit_view(rng, spine.landmarks(), shape)
    factor = 2 if shape[0] * shape[1] >= 1_200_000 else 1
    body = _Body.random(rng, spine)

    mid_shape = (-(-shape[0] // factor), -(-shape[1] // factor))
    coarse_shape = (-(-mid_shape[0] // 2), -(-mid_shape[1] // 2))
    soft = _render_soft(rng, spine, body, _Painter(coarse_shape, view, 2 * factor))
    density = _upsample(soft, 2, mid_shape)
    density += _render_bones(rng, spine, body, mid_shape, view, factor)
    display = _display(rng, density, view, factor)
    keep_out = _landmark_box(view.to_px(spine.landmarks(), factor), mid_shape)
    _add_film_artefacts(rng, display, keep_out, view.scale / factor)
    image = _finish(rng, display, factor, shape)
    return SyntheticRadiograph(
        image=image,
        landmarks=view.to_px(spine.landmarks()),
        spacing=(1.0 / view.scale, 1.0 / view.scale),
        seed=int(seed),
        curve_type=curve,
    )
