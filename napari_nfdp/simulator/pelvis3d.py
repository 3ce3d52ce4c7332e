"""Solids of the pelvis and hips: sacrum, iliac wings, pelvic ring, acetabula and femora.

The pelvis is built in a frame at the top of S1 (x lateral with a little obliquity, y down,
z anterior) and follows the sacral slope of the spine. Each iliac wing is part of an
ellipsoidal shell (a bowl narrowing down to the hip joint) cut by the crest (a second
ellipsoid) and by planes that open the pelvic inlet; seen from the front it is a faint fan with
a bright curved lateral edge. The sacrum is a tapering plate with its foramina, the pelvic
brim, rami and ischia are smooth tubes, the acetabular roof a partial spherical shell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_nfdp.simulator.materials import Materials
from napari_nfdp.simulator.solids import Solids, frame, unit
from napari_nfdp.simulator.spine3d import Spine


@dataclass(frozen=True)
class Pelvis:
    """Key points (patient frame, mm) used to frame films and shape the soft tissue."""

    hips: np.ndarray  # (2, 3) femoral head centres, image left then right
    crest: float  # Y of the iliac crests' top
    half_width: float  # half distance between the greater trochanters' outer edges


def smooth_path(points: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Corner-cutting (Chaikin) smoothing of an open 3-D polyline, ends kept."""
    for _ in range(rounds):
        a, b = points[:-1], points[1:]
        cut = np.stack([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], axis=1).reshape(-1, 3)
        points = np.vstack([points[:1], cut, points[-1:]])
    return points


class _Frame:
    """Pelvic frame: ``at(x, y, z)`` maps pelvic mm (scaled) to patient coordinates."""

    def __init__(self, origin: np.ndarray, obliquity: float, scale: float):
        c, s = np.cos(obliquity), np.sin(obliquity)
        self.axes = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        self.origin = origin
        self.scale = scale

    def at(self, *xyz) -> np.ndarray:
        return self.origin + self.axes @ (np.array(xyz, dtype=float) * self.scale)

    def path(self, points, side: float) -> np.ndarray:
        pts = np.asarray(points, dtype=float) * [side, 1.0, 1.0] * self.scale
        return self.origin + pts @ self.axes.T


def add_pelvis(out: Solids, spine: Spine, mat: Materials, rng: np.random.Generator) -> Pelvis:
    """Append the sacrum, ilia, pubic and ischial rami, acetabula and femora."""
    top, normal = spine.sacrum
    scale = spine.vertebrae[-1].width / 50.0 * rng.uniform(0.95, 1.08)
    f = _Frame(top, np.radians(rng.normal(0.0, 1.5)), scale)
    slope = np.arctan2(normal[2], -normal[1])  # sacral slope: the sagittal tilt of S1 only
    axis = f.axes @ np.array([0.0, np.cos(slope), -np.sin(slope)])
    _sacrum(out, f, axis, spine.vertebrae[-1].depth, mat, rng)
    spread, drop, forward = rng.uniform(82, 94), rng.uniform(88, 102), rng.uniform(32, 48)
    crest = rng.uniform(-40.0, -22.0)
    hips = []
    for side in (-1.0, 1.0):
        hip = f.at(side * spread, drop, forward)
        hips.append(hip)
        _ilium(out, f, side, crest, drop, mat, rng)
        _ring(out, f, side, spread, drop, forward, mat)
        _femur(out, hip, side, scale, mat, rng)
    return Pelvis(np.array(hips), float(f.at(0, crest, 0)[1]), float((spread + 62) * scale))


def _sacrum(out: Solids, f: _Frame, axis: np.ndarray, depth: float, mat, rng) -> None:
    """S1 body, then a tapering plate (alae to the tip) with four pairs of foramina."""
    lateral = f.axes[:, 0]
    forward = unit(np.cross(lateral, axis))
    s = f.scale
    top = f.origin
    out.cylinder(
        top,
        top + axis * 24.0 * s,
        (24.0 * s, depth / 2),
        mat.cortex,
        hint=lateral,
        cortex=(1.0, mat.cancellous),
    )
    length = rng.uniform(95.0, 115.0) * s
    tip = top + axis * length + forward * rng.uniform(5.0, 20.0) * s
    centre = top + axis * 0.42 * length - forward * 6.0 * s
    axes = np.stack([lateral, axis, forward], axis=1)
    radii = np.array([56.0 * s, 0.62 * length, 14.0 * s])
    up = -axis
    planes = [(up, float(up @ top) + 6.0 * s)]
    for side in (-1.0, 1.0):
        shoulder = top + axis * 15.0 * s + side * lateral * 54.0 * s
        edge = unit(tip - shoulder)
        out_n = unit(side * lateral - (side * lateral @ edge) * edge)
        planes.append((out_n, float(out_n @ shoulder)))
    out.ellipsoid(centre, axes, radii, mat.cortex, planes=planes, cortex=(1.2, mat.marrow))
    for i in range(4):
        mid = top + axis * (30.0 + 17.0 * i) * s - forward * 6.0 * s
        for side in (-1.0, 1.0):
            hole = mid + side * lateral * (27.0 - 3.5 * i) * s
            out.cylinder(
                hole - forward * 25,
                hole + forward * 25,
                ((4.5 - 0.6 * i) * s,) * 2,
                -mat.marrow * 0.9,
                hint=lateral,
            )
    out.tube(
        np.stack([tip, tip + unit(axis + forward) * 15 * s, tip + forward * 25 * s]),
        (4.0, 3.0),
        mat.cortex * 0.6,
        lateral,
    )


def _ilium(out: Solids, f: _Frame, side: float, crest: float, drop: float, mat, rng) -> None:
    """An iliac wing: part of an ellipsoidal bowl from the sacro-iliac joint to the ASIS."""
    s = f.scale
    centre = f.at(side * 22.0, 15.0, 18.0)
    radii = np.array([112.0, 100.0, 90.0]) * s * rng.uniform(0.92, 1.08)
    thick = rng.uniform(6.0, 10.0)
    rim_c = f.at(side * 85.0, 160.0, 10.0)
    rim_r = np.array([140.0, 160.0 - crest, 110.0]) * s
    rim = (rim_c, (f.axes / rim_r).T)
    x, z = side * f.axes[:, 0], f.axes[:, 2]
    cuts = [
        (unit(-0.55 * x + 0.85 * z), float(unit(-0.55 * x + 0.85 * z) @ centre) + 5.0 * s),
        (unit(-x - 0.35 * z), float(unit(-x - 0.35 * z) @ centre)),
        (f.axes[:, 1], float(f.axes[:, 1] @ f.at(0, drop - 22.0, 0))),
    ]
    reach = radii.max() + 5.0
    for r, sign in ((radii, 1.0), (radii - thick, -1.0)):
        out.add(
            [(centre, (f.axes / r).T), rim],
            cuts,
            sign * mat.cortex * 0.4,
            centre - reach,
            centre + reach,
        )
    # the crest: a thick rim where the bowl leaves the crest ellipsoid
    points = []
    for ang in np.radians(np.linspace(-100.0, 55.0, 12)):
        d = np.array([side * np.sin(ang + np.pi / 2), 0.0, -np.cos(ang + np.pi / 2)])
        lo, hi = -1.0, 0.3
        for _ in range(24):  # height on the bowl (fraction of its radius) where the rim is
            t = 0.5 * (lo + hi)
            k = np.sqrt(max(1.0 - t * t, 0.0))
            p = centre + f.axes @ ((radii - thick / 2) * np.array([d[0] * k, t, d[2] * k]))
            inside = np.sum(((f.axes.T @ (p - rim_c)) / rim_r) ** 2) <= 1.0
            lo, hi = (lo, t) if inside else (t, hi)
        if all(n @ p <= h + 1e-6 for n, h in cuts) and lo > -0.98:
            points.append(p)
    if len(points) > 2:
        out.tube(
            np.array(points), (4.5, 3.5), mat.cortex * 0.8, f.axes[:, 1], cortex=(1.0, mat.marrow)
        )


def _ring(out: Solids, f: _Frame, side: float, spread, drop, forward, mat) -> None:
    """Pelvic brim, pubis, inferior ramus and ischium, and the acetabular roof."""
    cortex = (1.2, mat.marrow)
    dy, dz = drop - 95.0, forward - 40.0
    brim = [
        [42, 20, -15],
        [60, 52, 2],
        [68, 82 + dy, 32 + dz],
        [52, 106 + dy, 60 + dz],
        [24, 118 + dy, 78 + dz],
        [7, 121 + dy, 82 + dz],
    ]
    out.tube(
        smooth_path(f.path(brim, side)), (4.5, 3.5), mat.cortex * 0.8, f.axes[:, 1], cortex=cortex
    )
    ring = [
        [8, 146 + dy, 78 + dz],
        [34, 158 + dy, 55 + dz],
        [58, 152 + dy, 22 + dz],
        [74, 128 + dy, 12 + dz],
        [spread - 8, drop + 14, forward - 18],
    ]
    out.tube(smooth_path(f.path(ring, side)), (6.0, 4.0), mat.cortex, f.axes[:, 2], cortex=cortex)
    out.ellipsoid(
        f.at(side * 13, 132 + dy, 80 + dz),
        f.axes,
        np.array([9.0, 18.0, 9.0]) * f.scale,
        mat.cortex,
        cortex=cortex,
    )
    out.ellipsoid(
        f.at(side * 58, 150 + dy, 18 + dz),
        f.axes,
        np.array([13.0, 14.0, 14.0]) * f.scale,
        mat.cortex,
        cortex=cortex,
    )
    hip = f.at(side * spread, drop, forward)
    r = 27.0 * f.scale
    opening = f.axes @ unit(np.array([side * 0.75, 0.5, 0.45]))
    out.ellipsoid(
        hip,
        f.axes,
        [r, r, r],
        mat.cortex * 0.6,
        planes=[(opening, float(opening @ hip) + 3.0)],
        cortex=(3.0, 0.0),
    )


def _femur(out: Solids, hip, side: float, scale: float, mat, rng) -> None:
    """Femoral head, neck, trochanters and shaft."""
    head = 23.0 * scale * rng.uniform(0.93, 1.07)
    cortex = (1.5, mat.marrow)
    out.ellipsoid(hip, np.eye(3), [head] * 3, mat.cortex, cortex=cortex)
    angle = np.radians(rng.uniform(125.0, 138.0))
    neck_dir = unit(np.array([side * np.sin(angle), -np.cos(angle), -0.2]))
    base = hip + neck_dir * 55.0 * scale
    out.cylinder(hip, base, (15.0 * scale, 13.0 * scale), mat.cortex, hint=[0, 1, 0], cortex=cortex)
    out.ellipsoid(
        base + [side * 10.0, -12.0 * scale, -8.0],
        np.eye(3),
        np.array([15.0, 24.0, 17.0]) * scale,
        mat.cortex,
        cortex=cortex,
    )
    out.ellipsoid(
        base + [side * -22.0 * scale, 42.0 * scale, -8.0],
        np.eye(3),
        np.array([7.0, 9.0, 7.0]) * scale,
        mat.cortex,
        cortex=(1.0, mat.marrow),
    )
    knee = base + [side * -rng.uniform(25.0, 45.0) * scale, 400.0 * scale, 15.0]
    axes = frame(knee - base, [1.0, 0.0, 0.0])
    out.cylinder(
        base + axes[:, 2] * 10.0,
        knee,
        (14.0 * scale, 14.0 * scale),
        mat.cortex,
        cortex=(rng.uniform(4.0, 6.0), mat.marrow),
    )
