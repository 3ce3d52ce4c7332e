"""The film: attenuation to displayed grey, burned-in artefacts, noise and quantisation.

``_display`` compresses the range, sharpens and windows the attenuation; ``_add_film_artefacts``
adds collimation borders, lead markers and text, rulers and stitching seams away from the
landmarks; ``_finish`` upsamples to full size, adds noise and quantises to uint16.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_nfdp.simulator.anatomy import _View
from napari_nfdp.simulator.raster import _upsample

# 5x7 bitmap glyphs for lead markers and burned-in text.
_GLYPHS = {
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
}
_TEXTS = ("L", "R", "AP", "PA", "R", "L", "ST", "12", "3", "LAT")


def _display(rng: np.random.Generator, density: np.ndarray, view: _View, factor: int) -> np.ndarray:
    """Attenuation -> displayed grey in [0, 1]: range compression, sharpening, window, gamma."""
    px_per_mm = view.scale / factor
    d = density
    if rng.random() < 0.6:
        small = d[::4, ::4]
        low = ndimage.gaussian_filter(small, 30.0 * px_per_mm / 4)
        d = d - rng.uniform(0.2, 0.7) * _upsample(low, 4, d.shape)
    if rng.random() < 0.5:
        d = d + rng.uniform(0.3, 1.5) * (
            d - ndimage.gaussian_filter(d, rng.uniform(1.5, 4.0) * px_per_mm)
        )
    sample = d[::3, ::3]
    lo, hi = np.percentile(
        sample,
        [rng.uniform(0, 8), rng.uniform(97, 100) if rng.random() < 0.3 else rng.uniform(99.3, 100)],
    )
    v = (d - lo) / max(hi - lo, 1e-6)
    np.clip(v, 0.0, 1.0, out=v)
    if rng.random() < 0.3:
        c = rng.uniform(3, 8)
        v = (1 / (1 + np.exp(-c * (v - 0.5))) - 1 / (1 + np.exp(c / 2))) / (
            1 - 2 / (1 + np.exp(c / 2))
        )
    v **= rng.uniform(0.6, 1.6)
    if rng.random() < 0.3:  # soft focus / a source resampled from lower resolution
        v = ndimage.gaussian_filter(v, rng.uniform(0.5, 1.5) * max(1.0, 0.4 * px_per_mm))
    heel = rng.uniform(-0.12, 0.12)
    v *= 1 + heel * (np.linspace(-0.5, 0.5, v.shape[0], dtype=np.float32)[:, None])
    return v.astype(np.float32, copy=False)


def _landmark_box(points: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    lo = np.floor(points.min(axis=0)).astype(int) - 2
    hi = np.ceil(points.max(axis=0)).astype(int) + 2
    return max(lo[0], 0), min(hi[0], shape[0]), max(lo[1], 0), min(hi[1], shape[1])


def _add_film_artefacts(
    rng: np.random.Generator, v: np.ndarray, box: tuple[int, int, int, int], px_per_mm: float
) -> None:
    """Collimation borders, lead markers and text, rulers, stitching seams (in place)."""
    h, w = v.shape
    r0, r1, c0, c1 = box
    if rng.random() < 0.45:
        value = rng.uniform(0.8, 1.0) if rng.random() < 0.6 else rng.uniform(0.0, 0.08)
        rows = np.arange(h, dtype=np.float32)[:, None]
        cols = np.arange(w, dtype=np.float32)[None, :]
        mask = np.zeros(v.shape, dtype=bool)
        limits = {"top": r0, "bottom": h - r1, "left": c0, "right": w - c1}
        for side, room in limits.items():
            if rng.random() < 0.45 and room > 4:
                depth = rng.uniform(0.2, 0.95) * room
                slope = np.tan(np.radians(rng.uniform(-1.5, 1.5)))
                if side == "top":
                    mask |= rows < depth - abs(slope) * w + slope * cols
                elif side == "bottom":
                    mask |= rows > h - depth + abs(slope) * w + slope * cols
                elif side == "left":
                    mask |= cols < depth - abs(slope) * h + slope * rows
                else:
                    mask |= cols > w - depth + abs(slope) * h + slope * rows
        v[mask] = value + rng.normal(0, 0.01)
    for _ in range(rng.choice(4, p=[0.45, 0.35, 0.15, 0.05])):
        text = str(rng.choice(_TEXTS))
        cell = max(1, int(round(rng.uniform(8, 20) * px_per_mm / 7)))
        glyphs = [
            np.array([[ch == "#" for ch in row] for row in _GLYPHS[c]])
            for c in text
            if c in _GLYPHS
        ]
        if not glyphs:
            continue
        bitmap = np.hstack([np.pad(g, ((0, 0), (0, 1))) for g in glyphs])
        bitmap = np.kron(bitmap, np.ones((cell, cell), dtype=bool))
        boxed = rng.random() < 0.4
        pad = cell * 2 if boxed else 0
        bh, bw = bitmap.shape[0] + 2 * pad, bitmap.shape[1] + 2 * pad
        if bh >= h or bw >= w:
            continue
        top, left = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        if top < r1 and top + bh > r0 and left < c1 and left + bw > c0:
            continue
        patch = v[top : top + bh, left : left + bw]
        bright = rng.uniform(0.85, 1.0)
        if boxed:
            patch[:] = bright
            patch[pad : pad + bitmap.shape[0], pad : pad + bitmap.shape[1]][bitmap] = rng.uniform(
                0.0, 0.5
            )
        else:
            patch[bitmap] = bright
    if rng.random() < 0.12:
        room = [
            s for s, ok in (("left", c0 > 12 * px_per_mm), ("right", w - c1 > 12 * px_per_mm)) if ok
        ]
        if room:
            strip = max(2, int(8 * px_per_mm))
            col = (
                int(rng.uniform(0, c0 - strip))
                if rng.choice(room) == "left"
                else int(rng.uniform(c1, w - strip))
            )
            v[:, col : col + strip] *= 0.7
            period = 10.0 * px_per_mm
            for k in range(int(h / period)):
                length = strip if k % 5 == 0 else strip // 2
                row = int(k * period)
                v[row : row + max(1, int(0.6 * px_per_mm)), col : col + length] = 0.95
    if rng.random() < 0.12:
        for _ in range(rng.integers(1, 3)):
            row = int(rng.uniform(0.25, 0.75) * h)
            v[row:] *= 1 + rng.uniform(-0.06, 0.06)
            v[row : row + max(1, int(0.5 * px_per_mm))] *= rng.uniform(0.8, 1.2)


def _finish(
    rng: np.random.Generator, display: np.ndarray, factor: int, shape: tuple[int, int]
) -> np.ndarray:
    """Upsample to full size, add Poisson-like and Gaussian noise, quantise to uint16."""
    if factor > 1:
        display += rng.standard_normal(display.shape, dtype=np.float32) * np.float32(
            rng.uniform(0.0, 0.012)
        )
    v = _upsample(display, factor, shape)
    quantum, floor = rng.uniform(0.004, 0.03), rng.uniform(0.002, 0.015)
    noise = rng.standard_normal(shape, dtype=np.float32)
    np.clip(v, 0.0, 1.0, out=v)
    noise *= np.sqrt(np.float32(quantum**2) * v + np.float32(floor**2))
    v += noise
    bits = int(rng.integers(10, 17))
    full = float(2**bits - 1)
    low = rng.uniform(0.0, 0.06) * full
    high = rng.uniform(0.7, 1.0) * full
    np.clip(v, 0.0, 1.0, out=v)
    v *= np.float32(high - low)
    v += np.float32(low)
    return np.rint(v).astype(np.uint16)
