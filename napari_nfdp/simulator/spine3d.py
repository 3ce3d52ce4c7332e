"""The 3-D spine: vertebra sizes, the scoliotic and sagittal shape, and every vertebra's pose.

Patient frame (mm): X to the image right (the patient's left on an AP film), Y to the feet,
Z anterior (towards the source). ``build_spine`` draws C2..L5 sizes, a coronal curve (lateral
offsets as smooth bumps with their apex and end vertebrae, scaled until the coronal Cobb angle
of T1..L5 hits the target), kyphosis / lordosis, axial rotation growing with the lateral
deviation (the body turns into the convexity, so the pedicles and spinous process swing to
the concave side) and wedging (the endplates follow part of the curve's bend). Each vertebra
has a centre and a frame (u lateral, v caudal, w anterior) and tilted endplate planes. The 68
landmarks are the lateral rim points of the T1..L5 endplates (top-left, top-right,
bottom-left, bottom-right; left = -u = image left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_nfdp.simulator.solids import unit

NAMES: tuple[str, ...] = (
    tuple(f"C{i}" for i in range(2, 8))
    + tuple(f"T{i}" for i in range(1, 13))
    + tuple(f"L{i}" for i in range(1, 6))
)
T1 = 6  # index of T1 in NAMES
CURVE_TYPES: tuple[str, ...] = ("straight", "C", "S", "double")

# Typical adult sizes (mm), rounded from Panjabi et al., Spine 1991;16:861-869 (cervical),
# Spine 1991;16:888-901 (thoracic) and Spine 1992;17:299-306 (lumbar); disc heights are
# typical radiographic values. Columns: body width, body depth, body height, disc below,
# pedicle width, pedicle height, interpedicular (canal) width, transverse-process span
# (tip to tip), spinous-process length.
_SIZES = np.array(
    [
        [17.0, 15.0, 15.0, 4.0, 6.0, 8.0, 24.0, 52.0, 30.0],  # C2
        [16.0, 15.5, 11.5, 4.5, 5.5, 7.0, 24.0, 50.0, 22.0],
        [17.0, 16.0, 11.5, 4.5, 5.5, 7.0, 24.5, 52.0, 22.0],
        [18.0, 16.0, 11.5, 4.5, 5.8, 7.0, 25.0, 54.0, 24.0],
        [20.0, 16.5, 11.5, 4.5, 6.0, 7.5, 25.0, 58.0, 28.0],
        [22.5, 16.5, 13.0, 5.0, 6.5, 7.5, 24.0, 70.0, 40.0],  # C7
        [25.0, 16.0, 14.0, 4.0, 8.0, 9.5, 21.0, 76.0, 40.0],  # T1
        [26.0, 17.5, 16.0, 4.0, 7.0, 11.0, 17.5, 72.0, 42.0],
        [26.5, 19.0, 17.0, 4.0, 5.5, 11.5, 16.5, 70.0, 44.0],
        [27.0, 20.5, 17.5, 4.3, 4.7, 11.5, 16.0, 68.0, 45.0],
        [28.0, 22.0, 18.0, 4.5, 4.5, 11.5, 16.0, 66.0, 45.0],
        [29.0, 23.5, 18.5, 4.8, 4.8, 12.0, 16.0, 64.0, 45.0],
        [30.0, 25.0, 19.0, 5.0, 5.0, 12.0, 16.0, 62.0, 45.0],
        [31.0, 26.5, 19.5, 5.3, 5.5, 12.5, 16.0, 60.0, 44.0],
        [32.0, 28.0, 20.0, 5.6, 6.0, 13.0, 16.5, 58.0, 42.0],
        [34.0, 29.5, 21.0, 6.0, 6.5, 14.0, 17.0, 56.0, 40.0],
        [37.0, 31.0, 22.0, 6.5, 7.5, 15.5, 17.5, 52.0, 38.0],
        [40.0, 32.0, 23.0, 7.5, 8.0, 16.0, 18.0, 48.0, 36.0],  # T12
        [42.0, 34.0, 24.0, 9.0, 8.7, 15.5, 22.0, 70.0, 34.0],  # L1
        [44.0, 35.0, 25.0, 10.0, 9.0, 15.0, 22.5, 80.0, 34.0],
        [46.0, 36.0, 26.0, 11.0, 10.5, 14.5, 23.0, 88.0, 34.0],
        [48.0, 36.0, 26.0, 11.5, 13.0, 13.5, 24.0, 82.0, 33.0],
        [50.0, 36.0, 25.0, 10.0, 18.0, 14.0, 26.0, 85.0, 30.0],  # L5 (disc: L5-S1)
    ]
)
N_VERT = len(NAMES)


@dataclass(frozen=True)
class Vertebra:
    """One vertebra's pose and size (mm, patient frame)."""

    name: str
    centre: np.ndarray  # (3,) body centre
    axes: np.ndarray  # (3, 3) columns u (lateral, image right), v (caudal), w (anterior)
    top: tuple[np.ndarray, np.ndarray]  # (point, upward unit normal) of the upper endplate
    bottom: tuple[np.ndarray, np.ndarray]  # (point, downward unit normal) of the lower one
    width: float
    depth: float
    height: float
    pedicle: tuple[float, float]  # (width, height)
    canal: float
    transverse: float  # tip-to-tip span
    spinous: float

    def local(self, uvw: np.ndarray) -> np.ndarray:
        """Patient-frame points of local (u, v, w) mm offsets from the body centre."""
        return self.centre + np.asarray(uvw, dtype=float) @ self.axes.T

    def rim(self, which: str) -> np.ndarray:
        """(2, 3) left and right lateral rim points of the "top" or "bottom" endplate."""
        point, normal = self.top if which == "top" else self.bottom
        lateral = unit(self.axes[:, 0] - np.dot(self.axes[:, 0], normal) * normal)
        return np.stack([point - lateral * self.width / 2, point + lateral * self.width / 2])


@dataclass(frozen=True)
class Spine:
    """All vertebrae, the centre-line and the sacrum's top (patient frame)."""

    vertebrae: tuple[Vertebra, ...]
    s: np.ndarray  # arc length samples (mm), T1 top at 0
    points: np.ndarray  # (n, 3) centre-line
    sacrum: tuple[np.ndarray, np.ndarray]  # (S1 top centre, upward normal)
    curve_type: str
    cobb: float  # requested coronal Cobb angle of T1..L5 (degrees)
    rotation: np.ndarray  # (23,) axial rotation (degrees, + turns the front to +X)

    def landmarks(self) -> np.ndarray:
        """(68, 3) endplate corners of T1..L5 in AASCE order (TL, TR, BL, BR)."""
        return np.concatenate(
            [np.vstack([v.rim("top"), v.rim("bottom")]) for v in self.vertebrae[T1:]]
        )

    def at(self, s: float) -> np.ndarray:
        """Centre-line point at arc length ``s``."""
        return np.array([np.interp(s, self.s, self.points[:, k]) for k in range(3)])

    def pedicle_centres(self) -> np.ndarray:
        """(23, 2, 3) centres of the left and right pedicles' posterior ends."""
        out = np.empty((N_VERT, 2, 3))
        for i, v in enumerate(self.vertebrae):
            lateral = (v.canal + v.pedicle[0]) / 2.0
            for j, side in enumerate((-1.0, 1.0)):
                out[i, j] = v.local([side * lateral, -0.18 * v.height, -v.depth / 2 - 3.0])
        return out


def _bump(s: np.ndarray, centre: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian bump and its derivative: inflections (end vertebrae) at centre +- sigma."""
    x = (s - centre) / sigma
    g = np.exp(-0.5 * x * x)
    return g, -x * g / sigma


def _coronal_shape(rng, curve: str, mid: np.ndarray, pitch: float) -> list[tuple]:
    """[(weight, apex s, sigma)] bumps of the lateral offset for one curve type."""
    sign = 1.0 if rng.random() < 0.7 else -1.0  # right thoracic curves are the most common

    def curve_at(lo: int, hi: int, reach: tuple[float, float]) -> tuple[float, float]:
        apex = mid[int(rng.integers(lo, hi + 1))] + rng.normal(0.0, 0.2 * pitch)
        return apex, rng.uniform(*reach) * pitch

    if curve == "straight":
        return [
            (rng.normal(0.0, 1.0), mid[int(rng.integers(T1, N_VERT))], rng.uniform(2, 5) * pitch)
            for _ in range(2)
        ]
    if curve == "C":
        kind = rng.random()
        if kind < 0.5:
            apex, sigma = curve_at(T1 + 6, T1 + 9, (2.5, 4.0))
        elif kind < 0.75:
            apex, sigma = curve_at(T1 + 10, T1 + 12, (2.5, 3.5))
        else:
            apex, sigma = curve_at(T1 + 13, T1 + 15, (2.0, 3.0))
        return [(sign, apex, sigma)]
    upper, s_up = curve_at(T1 + 5, T1 + 8, (2.2, 3.2))
    lower, s_low = curve_at(T1 + 12, T1 + 15, (2.0, 3.0))
    ratio = rng.uniform(0.4, 0.8) if curve == "S" else rng.uniform(0.85, 1.15)
    bumps = [(sign, upper, s_up), (-sign * ratio, lower, s_low)]
    if curve == "double" and rng.random() < 0.3:
        bumps.append((-sign * rng.uniform(0.3, 0.6), mid[T1 + 2], rng.uniform(1.5, 2.2) * pitch))
    return bumps


def _sagittal_angle(rng, s: np.ndarray, mid: np.ndarray, s1: float) -> np.ndarray:
    """Sagittal tangent angle (rad, + = heading anterior going down): lordosis and kyphosis.

    The constant part is set so that T1 lies roughly above S1 (sagittal balance); the sacral
    slope follows from the lordosis.
    """
    lordosis = np.radians(rng.uniform(40.0, 65.0))
    kyphosis = np.radians(rng.uniform(12.0, 50.0))
    cervical = np.radians(rng.uniform(-10.0, 30.0))
    curvature = np.zeros_like(s)
    for total, centre, sigma in (
        (kyphosis, mid[T1 + 6] + rng.normal(0, 10), 55.0),
        (-lordosis, mid[T1 + 15] + rng.normal(0, 6), 35.0),
        (-cervical, mid[2], 25.0),
    ):
        g = np.exp(-0.5 * ((s - centre) / sigma) ** 2)
        curvature += total * g / (sigma * np.sqrt(2 * np.pi))
    angle = np.concatenate([[0.0], np.cumsum(0.5 * (curvature[1:] + curvature[:-1]) * np.diff(s))])
    inside = (s >= 0.0) & (s <= s1)
    drift = rng.uniform(-30.0, 15.0)  # S1 relative to T1 along Z (mm)
    lo, hi = -1.0, 1.0
    for _ in range(30):
        c = 0.5 * (lo + hi)
        lo, hi = (c, hi) if np.sum(np.sin(angle[inside] + c)) * 0.5 < drift else (lo, c)
    return angle + 0.5 * (lo + hi)


def build_spine(
    rng: np.random.Generator,
    curve: str,
    cobb: float,
    size: float | None = None,
    per_degree: float | None = None,
) -> Spine:
    """Draw a spine with a ``curve`` ("straight", "C", "S", "double") of ``cobb`` degrees.

    The lateral bumps are scaled (bisection) until the largest tilt difference between the
    T1..L5 endplate-corner lines, seen straight from the front, equals ``cobb``.
    ``per_degree`` is the apical axial rotation per degree of Cobb (None: drawn, 0.2-0.45).
    """
    if curve not in CURVE_TYPES:
        raise ValueError(f"curve must be one of {CURVE_TYPES}, got {curve!r}")
    size = rng.uniform(0.82, 1.05) if size is None else size
    dims = _SIZES * size * rng.normal(1.0, 0.03, _SIZES.shape)
    dims[:, 3] = _SIZES[:, 3] * size * rng.uniform(0.75, 1.25) * rng.uniform(0.85, 1.15, N_VERT)
    height, disc = dims[:, 2], dims[:, 3]
    top = np.concatenate([[0.0], np.cumsum(height + disc)[:-1]])
    top -= top[T1]
    bottom = top + height
    mid = 0.5 * (top + bottom)
    s1 = bottom[-1] + disc[-1]
    s = np.arange(top[0] - 40.0, s1 + 60.0, 0.5)
    pitch = float(np.mean(height[T1 + 4 : T1 + 10] + disc[T1 + 4 : T1 + 10]))

    offset = np.zeros_like(s)
    for weight, apex, sigma in _coronal_shape(rng, curve, mid, pitch):
        offset += weight * _bump(s, apex, sigma)[1]
    sagittal = np.tan(_sagittal_angle(rng, s, mid, s1))
    draws = {
        "fraction": rng.uniform(0.3, 0.6),  # share of the bend taken up by the vertebral bodies
        "per_degree": rng.uniform(0.2, 0.45),
        "twist": rng.normal(0.0, 1.5, N_VERT),
        "wedge": np.radians(rng.normal(0.0, 0.8, (N_VERT, 2))),
        "jitter": rng.normal(0.0, 0.3, (N_VERT, 3)) * [1.0, 0.0, 0.5],
    }
    if per_degree is not None:
        draws["per_degree"] = per_degree

    def shape(k: float) -> dict:
        tangent = unit(np.stack([k * offset, np.ones_like(s), sagittal], -1))
        steps = 0.5 * (tangent[1:] + tangent[:-1]) * np.diff(s)[:, None]
        points = np.vstack([np.zeros(3), np.cumsum(steps, axis=0)])
        points -= _interp(s, points, 0.0)
        return _poses(s, points, tangent, top, bottom, dims[:, 0], cobb, draws) | {"points": points}

    def coronal_cobb(k: float) -> float:
        rims = shape(k)["rims"][T1:]
        line = rims[:, :, 1].sum(axis=1) - rims[:, :, 0].sum(axis=1)
        return float(np.ptp(np.arctan2(line[:, 1], line[:, 0])))

    lo_k, hi_k = 0.0, 1.0
    while coronal_cobb(hi_k) < np.radians(cobb) and hi_k < 1e5:
        lo_k, hi_k = hi_k, hi_k * 2.0
    for _ in range(30):
        k = 0.5 * (lo_k + hi_k)
        lo_k, hi_k = (k, hi_k) if coronal_cobb(k) < np.radians(cobb) else (lo_k, k)
    g = shape(0.5 * (lo_k + hi_k))
    vertebrae = tuple(
        Vertebra(
            NAMES[i],
            g["centre"][i],
            g["axes"][i],
            (g["top"][i], g["normals"][i, 0]),
            (g["bottom"][i], g["normals"][i, 1]),
            *dims[i, :3],
            (dims[i, 4], dims[i, 5]),
            *dims[i, 6:],
        )
        for i in range(N_VERT)
    )
    s1_point = _interp(s, g["points"], s1)
    s1_normal = -unit(_interp(s, g["tangent"], s1))
    return Spine(
        vertebrae, s, g["points"], (s1_point, s1_normal), curve, float(cobb), g["rotation"]
    )


def _interp(s: np.ndarray, values: np.ndarray, at) -> np.ndarray:
    """Per-column linear interpolation of (n, 3) ``values`` sampled at ``s``."""
    return np.stack([np.interp(at, s, values[:, k]) for k in range(values.shape[1])], -1)


def _poses(s, points, tangent, top, bottom, width, cobb: float, draws: dict) -> dict:
    """Vectorised vertebra frames, endplates and rim points for one centre-line."""
    mid = 0.5 * (top + bottom)
    centre = _interp(s, points, mid) + draws["jitter"]
    v = unit(_interp(s, tangent, mid))
    # axial rotation: proportional to the lateral deviation from the T1-L5 chord
    a, b = centre[T1], centre[-1]
    along = np.clip((centre[:, 1] - a[1]) / (b[1] - a[1]), 0.0, 1.0)
    deviation = centre[:, 0] - (a[0] + along * (b[0] - a[0]))
    peak = np.max(np.abs(deviation[T1:]))
    rotation = deviation / max(peak, 1e-6) * draws["per_degree"] * cobb if peak > 0.5 else 0.0
    rotation = np.clip(rotation + draws["twist"], -45.0, 45.0)
    u = unit(np.array([1.0, 0.0, 0.0]) - v[:, :1] * v)
    w = np.cross(u, v)
    rho = np.radians(rotation)[:, None]
    u, w = u * np.cos(rho) - w * np.sin(rho), w * np.cos(rho) + u * np.sin(rho)
    height = bottom - top
    f = draws["fraction"]
    normals, ends, rims = [], [], []
    for k, (arc, sign) in enumerate(((top, -1.0), (bottom, 1.0))):
        normal = unit((1 - f) * v + f * unit(_interp(s, tangent, arc)))
        normal = sign * unit(normal + draws["wedge"][:, k : k + 1] * u)
        point = centre + sign * (height / 2)[:, None] * v
        lateral = unit(u - (u * normal).sum(-1, keepdims=True) * normal)
        half = (width / 2)[:, None] * lateral
        normals.append(normal)
        ends.append(point)
        rims.append(np.stack([point - half, point + half], axis=1))
    return {
        "centre": centre,
        "axes": np.stack([u, v, w], axis=2),
        "rotation": rotation,
        "normals": np.stack(normals, axis=1),
        "top": ends[0],
        "bottom": ends[1],
        "tangent": tangent,
        "rims": np.stack(rims, axis=1),
    }
