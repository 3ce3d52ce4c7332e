"""Anti-aliased drawing in world mm onto float32 layers, and upsampling between levels.

``_Painter`` accumulates attenuation at one resolution level through a ``_View`` (polygon,
stroke and ring primitives); ``_upsample`` is the bilinear step from one level to the next.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_nfdp.simulator.anatomy import _View


class _Painter:
    """A float32 layer at one resolution level, with world-coordinate drawing primitives."""

    def __init__(self, shape: tuple[int, int], view: _View, factor: int):
        self.layer = np.zeros(shape, dtype=np.float32)
        self.view = view
        self.factor = factor
        self.px_per_mm = view.scale / factor

    def polygon(self, world: np.ndarray, value: float) -> None:
        _fill_polygon(self.layer, self.view.to_px(world, self.factor), value)

    def stroke(self, world: np.ndarray, half_width, value: float, tube: float = 0.0) -> None:
        """A band of ``half_width`` mm along a polyline; ``tube`` > 0 darkens its core."""
        path = self.view.to_px(world, self.factor)
        tangent = np.gradient(path, axis=0)
        tangent /= np.maximum(np.hypot(tangent[:, 0], tangent[:, 1]), 1e-9)[:, None]
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        half = np.broadcast_to(np.asarray(half_width, dtype=float), len(path))[:, None]
        half = np.maximum(half * self.px_per_mm, 0.6)
        _fill_polygon(
            self.layer, np.vstack([path + normal * half, (path - normal * half)[::-1]]), value
        )
        if tube > 0.0:
            core = half * 0.55
            outline = np.vstack([path + normal * core, (path - normal * core)[::-1]])
            _fill_polygon(self.layer, outline, -tube * value)

    def ring(self, world: np.ndarray, value: float, rim: float, hole: float = 0.55) -> None:
        """A filled outline with a brighter rim: ``value`` inside, ``value * rim`` at the edge."""
        centre = world.mean(axis=0)
        self.polygon(world, value * rim)
        self.polygon(centre + (world - centre) * hole, value * (1.0 - rim))


def _fill_polygon(layer: np.ndarray, points: np.ndarray, value: float) -> None:
    """Add ``value`` times the (horizontally anti-aliased) coverage of a polygon to ``layer``."""
    rows, cols = points[:, 0], points[:, 1]
    r0, r1 = max(math.ceil(rows.min()), 0), min(math.floor(rows.max()), layer.shape[0] - 1)
    c0, c1 = max(math.floor(cols.min()), 0), min(math.ceil(cols.max()), layer.shape[1] - 1)
    if r1 < r0 or c1 < c0:
        return
    y = np.arange(r0, r1 + 1, dtype=float)[:, None]
    ra, rb = rows, np.roll(rows, -1)
    ca, cb = cols, np.roll(cols, -1)
    crosses = (y >= np.minimum(ra, rb)) & (y < np.maximum(ra, rb))
    slope = (cb - ca) / np.where(rb != ra, rb - ra, 1.0)
    x = np.where(crosses, ca + (y - ra) * slope, np.inf)
    x.sort(axis=1)
    n_cross = int(crosses.sum(axis=1).max())
    centres = np.arange(c0, c1 + 1, dtype=float)
    coverage = np.zeros((r1 - r0 + 1, c1 - c0 + 1), dtype=np.float32)
    for k in range(0, n_cross - 1, 2):
        start, end = x[:, k : k + 1], x[:, k + 1 : k + 2]
        overlap = np.minimum(end, centres + 0.5) - np.maximum(start, centres - 0.5)
        coverage += np.clip(overlap, 0.0, 1.0, out=overlap)
    layer[r0 : r1 + 1, c0 : c1 + 1] += np.float32(value) * coverage


def _upsample(image: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear integer-factor upsampling with pixel-centre alignment, cropped to ``shape``."""
    if factor == 1:
        return image[: shape[0], : shape[1]].copy()
    out = image
    for axis in (0, 1):
        src = np.moveaxis(out, axis, 0)
        nxt = np.concatenate([src[1:], src[-1:]])
        prv = np.concatenate([src[:1], src[:-1]])
        res = np.empty((src.shape[0] * factor,) + src.shape[1:], dtype=np.float32)
        for j in range(factor):
            d = (j + 0.5) / factor - 0.5
            res[j::factor] = (1 - abs(d)) * src + abs(d) * (nxt if d > 0 else prv)
        out = np.moveaxis(res, 0, axis)
    return np.ascontiguousarray(out[: shape[0], : shape[1]])
