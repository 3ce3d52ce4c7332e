"""From line integrals to a stored film: exposure, scatter, quantum noise and display processing.

``expose`` takes the line integral at the working resolution and returns the film at full
size: focal-spot blur, Beer-Lambert attenuation with the heel effect, scatter (a wide low-pass
of the primary), collimation, dose-dependent Poisson-like noise, the log transform, dynamic
range compression and edge enhancement, window/level, a tone curve, quantisation to 8..16
bits and, for MONOCHROME1, inversion of the stored values.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def upsample(image: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer factor, pixel centres aligned, cropped to ``shape``."""
    out = np.asarray(image, dtype=np.float32)
    if factor == 1:
        return out[: shape[0], : shape[1]].copy()
    for axis in (0, 1):
        n = out.shape[axis]
        pos = (np.arange(n * factor) + 0.5) / factor - 0.5
        lo = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
        hi = np.minimum(lo + 1, n - 1)
        w = np.clip(pos - np.floor(pos), 0.0, 1.0).astype(np.float32)
        w[pos < 0] = 0.0
        shape_w = [1, 1]
        shape_w[axis] = -1
        w = w.reshape(shape_w)
        a, b = np.take(out, lo, axis=axis), np.take(out, hi, axis=axis)
        out = a + (b - a) * w
    return np.ascontiguousarray(out[: shape[0], : shape[1]])


def expose(
    rng: np.random.Generator,
    bone: np.ndarray,
    soft: np.ndarray,
    factor: int,
    shape: tuple[int, int],
    pitch: float,
    keep: tuple[int, int, int, int],
    photometric: str,
    dtype: type = np.uint16,
) -> np.ndarray:
    """The stored film for working-resolution line integrals through bone (all analytic
    solids) and soft tissue (``pitch``: film mm per pixel).

    ``keep`` (r0, r1, c0, c1) is the full-resolution box that collimation must not cut.
    """
    work_mm = pitch * factor
    mu = soft + bone * _trabecular(rng, bone.shape, work_mm)
    mu = ndimage.gaussian_filter(mu, rng.uniform(0.25, 0.7) / work_mm)
    primary_w = np.exp(-mu)
    spr = rng.uniform(0.1, 0.9)  # scatter-to-primary ratio (grid ... no grid)
    small = primary_w[::4, ::4]
    scatter_w = ndimage.gaussian_filter(small, rng.uniform(25.0, 60.0) / (4 * work_mm))
    scatter_w *= spr * float(primary_w.mean()) / max(float(scatter_w.mean()), 1e-12)
    scatter_work = upsample(scatter_w, 4, primary_w.shape)
    scatter = upsample(scatter_work, factor, shape)
    rows, cols = shape
    heel = 1.0 + rng.uniform(-0.25, 0.25) * (np.linspace(-0.5, 0.5, rows, dtype=np.float32))
    primary = np.exp(-upsample(mu, factor, shape))
    primary *= heel[:, None]
    primary += scatter
    row_gate, col_gate = _collimation(rng, shape, keep)
    primary *= row_gate[:, None]
    primary *= col_gate[None, :]
    quanta = np.float32(np.exp(rng.uniform(np.log(2e4), np.log(4e5))))  # per film pixel
    signal = primary * quanta
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.sqrt(signal + np.float32(rng.uniform(0.0, 4.0) ** 2))
    signal += noise
    np.maximum(signal, 0.5, out=signal)
    density = np.log(quanta) - np.log(signal)  # log transform: bone bright

    # processing, driven by the noise-free picture at the working resolution
    clean = -np.log(primary_w + scatter_work)
    adjust = np.zeros_like(clean)
    # dynamic range compression (large-kernel low-pass subtraction), as every DR system does
    coarse = ndimage.gaussian_filter(clean[::4, ::4], rng.uniform(10.0, 35.0) / (4 * work_mm))
    adjust -= rng.uniform(0.7, 0.95) * upsample(coarse, 4, clean.shape)
    if rng.random() < 0.6:  # edge enhancement
        adjust += rng.uniform(0.3, 1.5) * (
            clean - ndimage.gaussian_filter(clean, rng.uniform(1.5, 4.0) / work_mm)
        )
    density += upsample(adjust, factor, shape)
    # window over the exposed patient (the air beside the body may clip to black)
    half = factor // 2
    grid = density[half::factor, half::factor][: soft.shape[0], : soft.shape[1]]
    exposed = (row_gate[half::factor, None] > 0.5) & (col_gate[None, half::factor] > 0.5)
    body = exposed[: grid.shape[0], : grid.shape[1]] & (
        soft[: grid.shape[0], : grid.shape[1]] > 1.0
    )
    sample = grid[body] if body.sum() > 100 else grid.ravel()
    lo, hi = np.percentile(sample[::3], [rng.uniform(0.5, 5.0), rng.uniform(99.0, 99.95)])
    level = (density - lo) / max(float(hi - lo), 1e-6)
    return _tone(rng, level, photometric, dtype)


def _trabecular(rng, shape: tuple[int, int], work_mm: float) -> np.ndarray:
    """1 + a mostly vertical band-limited texture that modulates bone (trabecular pattern)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma = (rng.uniform(0.8, 1.8) / work_mm, rng.uniform(0.4, 0.8) / work_mm)
    texture = ndimage.gaussian_filter(noise, sigma)
    texture *= rng.uniform(0.05, 0.15) / max(float(texture.std()), 1e-6)
    texture += 1.0
    return texture


def _collimation(rng, shape: tuple[int, int], keep: tuple[int, int, int, int]):
    """Row and column transmission of the collimator blades (soft-edged), sparing ``keep``."""
    gates = [np.ones(shape[0], dtype=np.float32), np.ones(shape[1], dtype=np.float32)]
    if rng.random() > 0.35:
        return gates
    r0, r1, c0, c1 = keep
    for axis, low, high in ((0, r0, r1), (1, c0, c1)):
        n = shape[axis]
        x = np.arange(n, dtype=np.float32)
        width = max(1.0, 0.003 * n)
        for edge, room, sign in ((0.0, low, 1.0), (float(n), n - high, -1.0)):
            if room < 8 or rng.random() > 0.5:
                continue
            cut = edge + sign * rng.uniform(0.1, 0.6) * room
            open_ = 0.5 + 0.5 * np.tanh(sign * (x - cut) / (2.0 * width))
            gates[axis] *= 0.03 + 0.97 * open_
    return gates


def _tone(rng, level: np.ndarray, photometric: str, dtype: type) -> np.ndarray:
    """Tone curve through a lookup table, quantisation and MONOCHROME1 inversion."""
    steps = 4096
    x = np.linspace(0.0, 1.0, steps)
    if rng.random() < 0.5:
        curve = x ** rng.uniform(0.75, 1.3)
    else:
        c = rng.uniform(2.0, 5.0)
        s = 1.0 / (1.0 + np.exp(-c * (x - rng.uniform(0.4, 0.6))))
        curve = (s - s[0]) / (s[-1] - s[0])
    full = 255 if dtype == np.uint8 else 2 ** int(rng.integers(10, 17)) - 1
    low, high = rng.uniform(0.0, 0.05) * full, rng.uniform(0.8, 1.0) * full
    table = np.rint(low + (high - low) * curve).astype(dtype)
    if photometric == "MONOCHROME1":
        table = (full - table).astype(dtype)
    index = np.clip(level * (steps - 1), 0, steps - 1).astype(np.int32)
    return np.take(table, index)
