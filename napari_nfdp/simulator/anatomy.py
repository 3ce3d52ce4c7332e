"""The patient in world millimetres: the spine, the body around it, and its bones.

World coordinates are ``(row, col)`` mm, row pointing to the feet, origin at the centre of the
T1 top endplate. ``_build_spine`` draws vertebra sizes, a straight, C or S curve scaled to a
target Cobb angle, and the corners of C2..L5 (the 68 landmarks are those of T1..L5, in AASCE
order); ``_Body`` is the habitus around it (ribcage, soft tissue, pelvis). ``_View`` maps
world mm to the pixels of the film or of a reduced level (one similarity transform) and
``_fit_view`` draws one that keeps every landmark on the film. ``_render_bones`` rasterises
the vertebrae, ribs, shoulders and pelvis as attenuation at the mid level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_nfdp.simulator.raster import _Painter, _upsample

# Vertebrae drawn: C2..C7 (not labelled), then T1..T12 and L1..L5 (labelled). Sizes are adult
# AP projections in mm; the disc is the one below the vertebra (the last one is L5-S1).
_T1 = 6
_HEIGHT = np.array(
    [14, 11, 11, 11.5, 12, 13]
    + [14, 15, 15.5, 16, 16.5, 17, 17.5, 18.5, 19, 20, 21, 22]
    + [24, 25, 26, 26.5, 26],
    dtype=float,
)
_WIDTH = np.array(
    [20, 18, 19, 20, 21.5, 24]
    + [26, 25.5, 25.5, 26, 27, 28, 29, 30, 31, 33, 35, 37]
    + [39, 41, 43, 45, 47],
    dtype=float,
)
_DISC = np.array(
    [4.5] * 6 + [4, 4, 4, 4, 4.5, 4.5, 5, 5, 5.5, 6, 6.5, 7.5] + [8.5, 9.5, 10, 10.5, 9],
    dtype=float,
)
_N_VERT = len(_HEIGHT)
# Lateral reach of the ribcage at each rib, relative to its widest point.
_RIB_REACH = np.array([0.5, 0.68, 0.79, 0.87, 0.93, 0.97, 1.0, 1.0, 0.99, 0.96, 0.8, 0.62])
# Lumbar transverse-process reach (fraction of body width from the centre), L1..L5.
_LUMBAR_TP = np.array([0.72, 0.85, 0.95, 0.85, 0.75])


# --------------------------------------------------------------------------- geometry


def _unit(angle: np.ndarray | float) -> np.ndarray:
    """Unit (row, col) vector(s) across a centre-line tilted by ``angle``, pointing right."""
    return np.stack([-np.sin(angle), np.cos(angle)], axis=-1)


def _local(origin: np.ndarray, angle: float, uv: np.ndarray) -> np.ndarray:
    """World points of local (u lateral, v caudal) mm coordinates in a frame tilted by ``angle``."""
    uv = np.asarray(uv, dtype=float)
    lateral = _unit(angle)
    caudal = np.array([lateral[1], -lateral[0]])
    return origin + uv[..., :1] * lateral + uv[..., 1:2] * caudal


def _ellipse(centre: np.ndarray, radii: tuple[float, float], angle: float = 0.0, n: int = 24):
    """Polygon (n, 2) of an ellipse with (row, col) radii, tilted like a vertebra by ``angle``."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    uv = np.stack([radii[1] * np.cos(t), radii[0] * np.sin(t)], axis=1)
    return _local(np.asarray(centre, dtype=float), angle, uv)


def _dog(s: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Tilt profile of one lateral curve: +1 at its upper end vertebra, -1 at its lower one."""
    x = (s - centre) / width
    return -x * np.exp(0.5 - 0.5 * x * x)


@dataclass
class _Spine:
    s: np.ndarray  # arc length along the centre-line (mm), T1 top at 0
    points: np.ndarray  # (n, 2) world centre-line
    theta: np.ndarray  # centre-line tilt (rad), 0 = vertical
    corners: np.ndarray  # (23, 4, 2) TL, TR, BL, BR
    sacrum_s: float
    rotation: np.ndarray  # (23,) axial rotation shift of the posterior elements (-1..1)

    def at(self, s: float) -> tuple[np.ndarray, float]:
        point = np.array(
            [np.interp(s, self.s, self.points[:, 0]), np.interp(s, self.s, self.points[:, 1])]
        )
        return point, float(np.interp(s, self.s, self.theta))

    def landmarks(self) -> np.ndarray:
        return self.corners[_T1:].reshape(-1, 2)

    def frame(self, i: int) -> tuple[np.ndarray, float, float, float]:
        """Centre, tilt, mean width and mean height of vertebra ``i``."""
        tl, tr, bl, br = self.corners[i]
        lateral = (tr + br - tl - bl) / 2.0
        angle = math.atan2(-lateral[0], lateral[1])
        width = float(np.hypot(*lateral))
        height = float(np.hypot(*((bl + br - tl - tr) / 2.0)))
        return self.corners[i].mean(axis=0), angle, width, height


def _apex(rng: np.random.Generator, top: np.ndarray, bottom: np.ndarray, lo: int, hi: int):
    i = int(rng.integers(lo, hi + 1))
    return 0.5 * (top[i] + bottom[i]) + rng.normal(0.0, 4.0)


def _build_spine(rng: np.random.Generator, curve: str, max_cobb: float) -> _Spine:
    size = rng.uniform(0.82, 1.05)
    region = np.where(
        np.arange(_N_VERT) < _T1 + 12, rng.uniform(0.92, 1.08), rng.uniform(0.92, 1.08)
    )
    height = _HEIGHT * size * region * rng.normal(1.0, 0.035, _N_VERT)
    width = _WIDTH * size * rng.uniform(0.86, 1.15) * rng.normal(1.0, 0.035, _N_VERT)
    disc = _DISC * size * rng.uniform(0.6, 1.35) * rng.uniform(0.75, 1.25, _N_VERT)
    top = np.concatenate([[0.0], np.cumsum(height + disc)[:-1]])
    top -= top[_T1]
    bottom = top + height
    sacrum_s = bottom[-1] + disc[-1]
    s = np.arange(top[0] - 260.0, sacrum_s + 260.0, 0.5)

    # Curve shape g(s), scaled so that the Cobb angle of the labelled vertebrae hits the target.
    if curve == "straight":
        g = np.zeros_like(s)
        for _ in range(3):
            g += rng.normal() * np.sin(2 * np.pi * s / rng.uniform(150, 500) + rng.uniform(0, 6.3))
        target = rng.uniform(0.0, min(6.0, max_cobb))
    else:
        sign = rng.choice([-1.0, 1.0])
        if curve == "C":
            kind = rng.random()
            if kind < 0.5:
                centre, width_c = _apex(rng, top, bottom, 11, 15), rng.uniform(55, 90)
            elif kind < 0.75:
                centre, width_c = _apex(rng, top, bottom, 16, 18), rng.uniform(45, 75)
            else:
                centre, width_c = _apex(rng, top, bottom, 18, 20), rng.uniform(45, 70)
            g = _dog(s, centre, width_c) - rng.uniform(0, 0.15) * _dog(
                s, centre + 2.2 * width_c, width_c
            )
        else:
            c1, c2 = _apex(rng, top, bottom, 11, 14), _apex(rng, top, bottom, 17, 20)
            w1, w2 = rng.uniform(45, 75), rng.uniform(40, 65)
            squeeze = min(1.0, (c2 - c1) / (0.95 * (w1 + w2)))
            g = _dog(s, c1, w1 * squeeze) - rng.uniform(0.6, 1.25) * _dog(s, c2, w2 * squeeze)
            if rng.random() < 0.2:
                g -= rng.uniform(0.2, 0.5) * _dog(
                    s, _apex(rng, top, bottom, 7, 9), rng.uniform(25, 40)
                )
        g *= sign
        target = rng.uniform(min(10.0, max_cobb), max_cobb)
    tilt = 0.5 * (np.interp(top, s, g) + np.interp(bottom, s, g))[_T1:]
    spread = tilt.max() - tilt.min()
    theta = g * (np.radians(target) / spread if spread > 1e-9 else 0.0)

    step = np.diff(s)
    mid = 0.5 * (theta[1:] + theta[:-1])
    points = np.zeros((len(s), 2))
    points[1:, 0] = np.cumsum(np.cos(mid) * step)
    points[1:, 1] = np.cumsum(np.sin(mid) * step)
    points -= [np.interp(0.0, s, points[:, 0]), np.interp(0.0, s, points[:, 1])]

    corners = np.empty((_N_VERT, 4, 2))
    wedge = np.radians(rng.normal(0.0, 0.8, (_N_VERT, 2)))
    shift = rng.normal(0.0, 0.3, (_N_VERT, 2))
    bottom_width = width * rng.normal(1.015, 0.025, _N_VERT)
    for i in range(_N_VERT):
        for j, (arc, w) in enumerate(((top[i], width[i]), (bottom[i], bottom_width[i]))):
            centre = np.array([np.interp(arc, s, points[:, 0]), np.interp(arc, s, points[:, 1])])
            half = _unit(np.interp(arc, s, theta) + wedge[i, j]) * (w / 2.0)
            corners[i, 2 * j] = centre - half + shift[i]
            corners[i, 2 * j + 1] = centre + half + shift[i]

    # Axial rotation follows the lateral deviation from the T1-L5 chord (apical vertebrae most).
    centres = corners.mean(axis=1)
    chord = centres[-1] - centres[_T1]
    normal = np.array([-chord[1], chord[0]]) / np.hypot(*chord)
    deviation = -(centres - centres[_T1]) @ normal
    rotation = np.clip(deviation / 35.0, -1.0, 1.0) * rng.uniform(0.1, 0.4)
    return _Spine(s, points, theta, corners, sacrum_s, rotation)


@dataclass
class _View:
    """Similarity map world (mm) -> pixel (row, col) of the full image or a reduced level."""

    scale: float  # full-resolution pixels per mm
    rotation: np.ndarray  # 2x2
    world_origin: np.ndarray
    pixel_origin: np.ndarray

    def to_px(self, points: np.ndarray, factor: int = 1) -> np.ndarray:
        full = (np.asarray(points) @ self.rotation.T - self.world_origin) * self.scale
        return (full + self.pixel_origin - (factor - 1) / 2.0) / factor


def _fit_view(rng: np.random.Generator, landmarks: np.ndarray, shape: tuple[int, int]) -> _View:
    height, width = shape
    angle = np.radians(np.clip(rng.normal(0.0, 2.0), -6.0, 6.0))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned = landmarks @ rotation.T
    low, high = turned.min(axis=0), turned.max(axis=0)
    margin = max(2.0, 0.004 * height)
    scale = rng.uniform(0.58, 0.94) * (height - 2 * margin) / (high[0] - low[0])
    scale = min(scale, (width - 2 * margin) / (high[1] - low[1]))
    free = np.array([height, width]) - 2 * margin - (high - low) * scale
    mode = rng.random()
    if mode < 0.15:
        at_row = rng.uniform(0.0, 0.02)
    elif mode < 0.3:
        at_row = rng.uniform(0.98, 1.0)
    else:
        at_row = rng.uniform(0.1, 0.9)
    spread = 0.3 if rng.random() < 0.25 else 0.07
    at_col = np.clip(rng.normal(0.5, spread), 0.0, 1.0)
    origin = margin + free * np.array([at_row, at_col])
    return _View(scale, rotation, low, origin)


@dataclass
class _Body:
    """Patient habitus around the spine: ribcage, soft tissue and pelvis parameters (mm)."""

    centre_top: np.ndarray  # body midline at C7 and at the sacrum
    centre_bottom: np.ndarray
    chest: float  # half-width of the ribcage at its widest
    fat: float  # soft tissue outside the ribs
    arms_down: bool
    heart_side: float  # +1: heart on the image right
    bone: float  # bone density scale
    pelvis_tilt: float

    @classmethod
    def random(cls, rng: np.random.Generator, spine: _Spine) -> _Body:
        c7 = spine.corners[_T1 - 1].mean(axis=0)
        sacrum, _ = spine.at(spine.sacrum_s)
        scale = spine.corners[_T1 + 11, 1, 1] - spine.corners[_T1 + 11, 0, 1]
        return cls(
            centre_top=c7 + [0.0, rng.normal(0.0, 6.0)],
            centre_bottom=sacrum + [0.0, rng.normal(0.0, 6.0)],
            chest=scale * rng.uniform(3.3, 4.2),
            fat=rng.uniform(8.0, 45.0),
            arms_down=bool(rng.random() < 0.4),
            heart_side=1.0 if rng.random() < 0.85 else -1.0,
            bone=rng.uniform(0.6, 1.4),
            pelvis_tilt=np.radians(rng.normal(0.0, 2.5)),
        )

    def midline(self, row: np.ndarray | float) -> np.ndarray | float:
        """Body midline column at a world row."""
        (r0, c0), (r1, c1) = self.centre_top, self.centre_bottom
        return c0 + (np.asarray(row) - r0) * (c1 - c0) / (r1 - r0)


# --------------------------------------------------------------------------- bones


def _render_bones(
    rng: np.random.Generator,
    spine: _Spine,
    body: _Body,
    shape: tuple[int, int],
    view: _View,
    factor: int,
) -> np.ndarray:
    """Bone attenuation at the mid level: spine sharp, ribs, shoulders and pelvis blurrier."""
    column = _Painter(shape, view, factor)
    for i in range(_N_VERT):
        _draw_vertebra(rng, spine, i, body.bone, column)
    other = _Painter(shape, view, factor)
    _draw_ribs(rng, spine, body, other)
    _draw_shoulders(rng, spine, body, other)
    _draw_pelvis(rng, spine, body, other)
    mm = column.px_per_mm
    layer = ndimage.gaussian_filter(column.layer, max(0.5, rng.uniform(0.3, 0.8) * mm))
    layer += ndimage.gaussian_filter(other.layer, max(0.6, rng.uniform(0.6, 1.6) * mm))
    half = (-(-shape[0] // 2), -(-shape[1] // 2))
    texture = ndimage.gaussian_filter(rng.standard_normal(half, dtype=np.float32), 1.0)
    texture = _upsample(texture, 2, shape)
    texture *= rng.uniform(0.02, 0.1) / max(float(texture.std()), 1e-6)
    texture += 1.0
    layer *= texture
    return layer


def _draw_vertebra(
    rng: np.random.Generator, spine: _Spine, i: int, bone: float, paint: _Painter
) -> None:
    tl, tr, bl, br = spine.corners[i]
    centre, angle, width, height = spine.frame(i)
    level = float(np.clip((i - _T1) / 16.0, 0.0, 1.0))
    density = bone * (0.25 + 0.2 * level) * rng.uniform(0.85, 1.1)
    # Body: the corners joined by straight endplates and gently concave sides, brighter cortex.
    lateral = _unit(angle)
    caudal = np.array([lateral[1], -lateral[0]])
    waist = lateral * width * rng.uniform(0.015, 0.05)
    t = np.linspace(0.0, 1.0, 6)[1:-1, None]
    bulge = 4.0 * t * (1.0 - t)
    outline = np.vstack(
        [tl, tr, tr + (br - tr) * t - waist * bulge, br, bl, bl + (tl - bl) * t + waist * bulge]
    )
    rim = rng.uniform(1.0, 2.2) * height / 20.0
    u = (outline - centre) @ lateral * (1.0 - 2.0 * rim / width)
    v = (outline - centre) @ caudal * (1.0 - 2.0 * rim / height)
    gain = rng.uniform(1.25, 1.7)
    paint.polygon(outline, density * gain)
    paint.polygon(centre + u[:, None] * lateral + v[:, None] * caudal, -density * (gain - 1.0))

    shift = spine.rotation[i] * width * 0.35
    post = density * rng.uniform(0.3, 0.5)
    if i < _T1:  # cervical: lateral masses and transverse processes
        for side in (-1.0, 1.0):
            pillar = [[side * 0.62 * width, -0.7 * height], [side * 0.62 * width, 0.8 * height]]
            paint.stroke(_local(centre, angle, pillar), 0.1 * width, post * 0.5)
            reach = 0.95 if i == _T1 - 1 else 0.7
            tp = [[side * 0.4 * width, -0.15 * height], [side * reach * width, -0.05 * height]]
            paint.stroke(_local(centre, angle, tp), 0.07 * width, post)
        return
    lumbar = i >= _T1 + 12
    for side in (-1.0, 1.0):
        pedicle = _local(centre, angle, [side * 0.3 * width + shift * 0.5, -0.12 * height])
        paint.ring(_ellipse(pedicle, (0.17 * height, 0.085 * width), angle, 16), post, 1.6)
        lamina = [[side * 0.3 * width + shift * 0.5, 0.05 * height], [shift, 0.45 * height]]
        paint.stroke(_local(centre, angle, lamina), 0.04 * width, post * 0.3)
        if lumbar:
            reach = _LUMBAR_TP[i - _T1 - 12] * width
            tp = [[side * 0.35 * width, -0.05 * height], [side * reach, -0.1 * height]]
            paint.stroke(_local(centre, angle, tp), np.array([0.08, 0.045]) * width, post * 0.8)
        else:
            reach = (0.78 if i == _T1 else 0.7 - 0.012 * (i - _T1)) * width
            tp = [[side * 0.35 * width, -0.2 * height], [side * reach, -0.3 * height]]
            paint.stroke(_local(centre, angle, tp), np.array([0.1, 0.07]) * width, post * 0.7)
    v_sp = np.linspace(0.05, 0.45 if lumbar else 0.95, 6) * height
    spinous = _local(centre, angle, np.stack([np.full(6, shift), v_sp], axis=1))
    paint.stroke(spinous, 0.07 * width * np.sin(np.linspace(0.5, 2.6, 6)), post * 0.7)


def _bezier(p0, p1, p2, p3, n: int = 14) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _draw_ribs(rng: np.random.Generator, spine: _Spine, body: _Body, paint: _Painter) -> None:
    density = body.bone * rng.uniform(0.16, 0.28)
    anterior = rng.uniform(0.25, 0.6)
    thickness = rng.uniform(3.5, 5.0) * body.chest / 130.0
    slope = rng.uniform(0.3, 0.5)
    for k in range(12):
        centre, angle, width, height = spine.frame(_T1 + k)
        for side in (-1.0, 1.0):
            origin = _local(centre, angle, [side * 0.45 * width, -0.2 * height])
            mid = body.midline(origin[0])
            reach = body.chest * _RIB_REACH[k] * rng.normal(1.0, 0.02)
            span = abs(mid + side * reach - origin[1])
            drop = slope * reach * rng.normal(1.0, 0.05)
            lift = 0.05 * reach
            if k >= 10:  # floating ribs: short, down and out
                end = origin + [drop * 0.8, side * span * 0.8]
                post = _bezier(
                    origin,
                    origin + [0, side * 0.45 * span],
                    end - [0.35 * drop, side * 0.15 * span],
                    end,
                )
                paint.stroke(post, thickness * 0.9, density, tube=0.3)
                continue
            lateral = origin + [drop, side * span]
            post = _bezier(
                origin, origin + [-lift, side * 0.45 * span], lateral - [0.55 * drop, 0.0], lateral
            )
            paint.stroke(post, thickness * (1.25 if k == 0 else 1.0), density, tube=0.3)
            fall = reach * (0.35 if k == 0 else rng.uniform(0.45, 0.65))
            end = np.array([lateral[0] + fall, mid + side * reach * rng.uniform(0.25, 0.45)])
            beta = np.radians(rng.uniform(25, 45))
            heading = np.array([np.sin(beta), -side * np.cos(beta)])
            reach_len = float(np.hypot(*(end - lateral)))
            ant = _bezier(
                lateral, lateral + [0.45 * fall, 0.0], end - heading * 0.35 * reach_len, end
            )
            paint.stroke(ant, thickness * 1.2, density * anterior, tube=0.2)


def _draw_shoulders(rng: np.random.Generator, spine: _Spine, body: _Body, paint: _Painter) -> None:
    t1 = spine.corners[_T1, :2].mean(axis=0)
    density = body.bone * rng.uniform(0.25, 0.4)
    mid = body.midline(t1[0])
    for side in (-1.0, 1.0):
        medial = np.array([t1[0] + rng.uniform(20, 50), mid + side * rng.uniform(12, 25)])
        lateral = np.array(
            [t1[0] - rng.uniform(0, 30), mid + side * (body.chest + rng.uniform(0, 25))]
        )
        t = np.linspace(0.0, 1.0, 16)[:, None]
        clavicle = medial + (lateral - medial) * t
        clavicle[:, 0] += rng.uniform(3, 7) * np.sin(2 * np.pi * t[:, 0])
        paint.stroke(
            clavicle, rng.uniform(4.5, 6.5) * np.linspace(1.1, 0.9, 16), density, tube=0.25
        )
        head = lateral + [rng.uniform(20, 35), side * rng.uniform(0, 15)]
        paint.ring(_ellipse(head, (24.0, 23.0)), density, 1.3, 0.8)
        if body.arms_down:
            shaft = head + np.array([[0.0, 0.0], [300.0, side * rng.uniform(10, 40)]])
            paint.stroke(shaft, 11.0, density, tube=0.4)
    c2, angle, width, _ = spine.frame(0)
    mandible = np.array(
        [[-2.4, -5], [-2.2, 25], [-1.4, 45], [0.0, 55], [1.4, 45], [2.2, 25], [2.4, -5]]
    )
    paint.stroke(_local(c2, angle, mandible * [width, 1.0]), 4.0, density * 0.4, tube=0.3)


def _chaikin(points: np.ndarray, closed: bool = True, rounds: int = 2) -> np.ndarray:
    """Corner-cutting smoothing of a polygon (closed) or polyline (open, ends kept)."""
    for _ in range(rounds):
        start, end = (points, np.roll(points, -1, axis=0)) if closed else (points[:-1], points[1:])
        cut = np.stack([0.75 * start + 0.25 * end, 0.25 * start + 0.75 * end], axis=1).reshape(
            -1, 2
        )
        points = cut if closed else np.vstack([points[:1], cut, points[-1:]])
    return points


def _draw_pelvis(rng: np.random.Generator, spine: _Spine, body: _Body, paint: _Painter) -> None:
    origin, theta = spine.at(spine.sacrum_s)
    angle = 0.5 * theta + body.pelvis_tilt
    w5 = float(np.hypot(*(spine.corners[-1, 3] - spine.corners[-1, 2])))
    density = body.bone * rng.uniform(0.25, 0.4)
    rim = density * rng.uniform(0.4, 0.8)
    span = rng.uniform(0.75, 0.95)

    def place(uv, side: float = 1.0, smooth: bool = False) -> np.ndarray:
        uv = np.array(uv, dtype=float)
        return _local(origin, angle, (_chaikin(uv) if smooth else uv) * [side * w5 * span, 1.0])

    sacrum = [[-1, 6], [-0.5, 0], [0.5, 0], [1, 6], [0.92, 30], [0.7, 55], [0.4, 75], [0.12, 88]]
    sacrum += [[-u, v] for u, v in sacrum[4:][::-1]]
    paint.polygon(place(sacrum, smooth=True), density * 0.8)
    paint.polygon(place([[-0.48, 0], [0.48, 0], [0.44, 18], [-0.44, 18]]), density * 0.3)
    for v, r in ((16, 3.5), (32, 3.2), (46, 2.8), (58, 2.4)):
        for side in (-1.0, 1.0):
            hole = place([[0.33 * (1 - v / 150), v]], side)[0]
            paint.polygon(_ellipse(hole, (r, r * 1.3), angle, 12), -density * 0.3)
    ch = rng.uniform(45, 70)
    ilium = [[0.95, 2], [1.1, -0.6 * ch], [1.5, -0.95 * ch], [2.1, -ch], [2.7, -0.85 * ch]]
    ilium += [[3.05, -0.5 * ch], [3.1, -0.1 * ch], [2.85, 20], [2.55, 50], [2.45, 72], [1.55, 78]]
    ilium += [[1.1, 50], [0.95, 35]]
    ring = np.array(
        [[2.1, 95], [1.3, 108], [0.12, 122], [0.12, 150], [0.9, 160], [1.7, 150], [2.15, 122]]
    )
    hole = (ring - ring.mean(axis=0)) * [0.6, 0.55] + ring.mean(axis=0)
    brim = np.array([[0.98, 25], [1.3, 55], [1.4, 85], [1.0, 115], [0.1, 128]])
    for side in (-1.0, 1.0):
        wing = place(ilium, side, smooth=True)
        paint.polygon(wing, density * 0.35)
        paint.stroke(wing[: 4 * 7], 2.5, rim)
        paint.stroke(place(_chaikin(brim, closed=False), side), 2.5, rim)
        paint.polygon(place(ring, side, smooth=True), density * 0.8)
        paint.polygon(place(hole, side, smooth=True), -density * 0.7)
        head = place([[2.25, 88]], side)[0]
        paint.ring(_ellipse(head, (23.0, 23.0), angle), density, 1.3, 0.75)
        femur = place([[2.25, 88], [2.95, 118], [2.95, 160], [2.8, 420]], side)
        paint.stroke(femur, np.array([13.0, 16.0, 14.0, 12.0]), density, tube=0.35)
