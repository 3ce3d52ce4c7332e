"""Render landmarks and Cobb lines onto a radiograph as an RGB picture (no napari needed)."""

from __future__ import annotations

import numpy as np
from skimage.draw import disk, line_aa

from napari_nfdp.core.cobb import CobbResult
from napari_nfdp.core.preprocess import normalise_intensity, to_grey_float32

CURVE_COLOURS = {"PT": (255, 200, 0), "MT": (255, 60, 60), "TL": (60, 160, 255)}
POINT_COLOUR = (0, 255, 120)
UNCERTAIN_COLOUR = (255, 0, 255)


def _draw_line(rgb: np.ndarray, p0, p1, colour, width: int) -> None:
    h, w = rgb.shape[:2]
    for offset in range(-(width // 2), width // 2 + 1):
        rr, cc, val = line_aa(
            int(round(p0[0])) + offset,
            int(round(p0[1])),
            int(round(p1[0])) + offset,
            int(round(p1[1])),
        )
        keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        rr, cc, val = rr[keep], cc[keep], val[keep][:, None]
        rgb[rr, cc] = (1 - val) * rgb[rr, cc] + val * np.asarray(colour, dtype=np.float32)


def render_overlay(
    image: np.ndarray,
    landmarks: np.ndarray,
    cobb: CobbResult | None = None,
    uncertain: np.ndarray | None = None,
) -> np.ndarray:
    """An (H, W, 3) uint8 picture: the image in grey, landmarks as dots, Cobb end-vertebra lines.

    ``uncertain`` is an optional (K,) boolean mask of landmarks drawn in a warning colour.
    """
    grey = normalise_intensity(to_grey_float32(image)) + 0.5
    rgb = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.float32)[..., None], 3, axis=2)
    scale = max(rgb.shape[:2]) / 1000.0
    radius, width = max(2.0, 6 * scale), max(1, int(round(2 * scale)))
    if cobb is not None:
        extend = 0.6  # lines reach beyond the vertebra so the angle reads clearly
        for curve in (c for c in cobb.curves if c.measured):  # no line for a 0-deg non-curve
            for left, right in curve.lines:
                d = right - left
                _draw_line(
                    rgb, left - extend * d, right + extend * d, CURVE_COLOURS[curve.name], width
                )
    flags = np.zeros(len(landmarks), bool) if uncertain is None else np.asarray(uncertain, bool)
    for (r, c), flag in zip(landmarks, flags, strict=True):
        if np.isfinite(r) and np.isfinite(c):
            rr, cc = disk((r, c), radius, shape=rgb.shape[:2])
            rgb[rr, cc] = UNCERTAIN_COLOUR if flag else POINT_COLOUR
    return np.clip(rgb, 0, 255).astype(np.uint8)
