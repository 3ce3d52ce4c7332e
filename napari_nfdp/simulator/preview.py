"""A contact sheet of projected films with their landmarks drawn, to judge realism at a glance.

``preview(seeds, out_png)`` renders each seed with ``simulate_projected``, shows it as
MONOCHROME2 grey, marks the visible corners (green left, red right; hidden ones are not drawn)
and the endplate lines, and tiles the films with their field and curve written nowhere but
the log (the sheet stays free of text).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from skimage import draw, io
from skimage.transform import resize

from napari_nfdp.simulator.projected import SimulatedFilm, simulate_projected

logger = logging.getLogger(__name__)


def display_grey(film: SimulatedFilm) -> np.ndarray:
    """The film as float32 grey in [0, 1], bone bright whatever its photometric."""
    image = film.image.astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    grey = (image - lo) / max(hi - lo, 1.0)
    return 1.0 - grey if film.photometric == "MONOCHROME1" else grey


def annotate(film: SimulatedFilm, height: int) -> np.ndarray:
    """(height, w, 3) uint8 RGB of the film scaled to ``height`` rows, landmarks drawn."""
    grey = display_grey(film)
    scale = height / grey.shape[0]
    width = max(1, int(round(grey.shape[1] * scale)))
    small = resize(grey, (height, width), order=1, anti_aliasing=True)
    rgb = np.repeat((np.clip(small, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    points = film.landmarks * scale
    for k in range(0, 68, 2):  # endplate lines
        if film.visible[k] and film.visible[k + 1]:
            (r0, c0), (r1, c1) = np.rint(points[k : k + 2]).astype(int)
            rr, cc = draw.line(r0, c0, r1, c1)
            ok = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
            rgb[rr[ok], cc[ok]] = (255, 220, 0)
    for k, (r, c) in enumerate(points):
        if not film.visible[k]:
            continue
        rr, cc = draw.disk((r, c), max(1.5, height / 400), shape=rgb.shape[:2])
        rgb[rr, cc] = (0, 230, 0) if k % 2 == 0 else (255, 40, 40)
    return rgb


def preview(
    seeds: Iterable[int], out_png: str | Path, height: int = 700, columns: int = 6, **options
) -> Path:
    """Write a grid of annotated films (one per seed) to ``out_png``; return its path.

    ``options`` go to ``simulate_projected`` (e.g. ``shape`` or ``field``).
    """
    tiles = []
    for seed in seeds:
        film = simulate_projected(seed, **options)
        logger.info(
            "seed %d: %s, %s curve %.0f deg, %s, %s",
            seed,
            film.field,
            film.curve_type,
            film.cobb,
            film.image.shape,
            film.photometric,
        )
        tiles.append(annotate(film, height))
    if not tiles:
        raise ValueError("preview needs at least one seed")
    lines = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    width = max(sum(t.shape[1] + 6 for t in line) for line in lines)
    sheet = np.full((len(lines) * (height + 6), width, 3), 40, dtype=np.uint8)
    for r, line in enumerate(lines):
        left = 3
        for tile in line:
            top = r * (height + 6) + 3
            sheet[top : top + height, left : left + tile.shape[1]] = tile
            left += tile.shape[1] + 6
    out = Path(out_png)
    io.imsave(out, sheet, check_contrast=False)
    return out
