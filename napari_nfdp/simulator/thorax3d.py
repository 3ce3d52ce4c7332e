"""Solids of the chest wall and shoulder girdle: ribs, costal cartilage, sternum, clavicles,
scapulae and the upper arms.

Each rib is a mitred chain of elliptic tubes with a cortical shell. It starts at its vertebra
(head and neck, carried rigidly with the vertebra's pose) and sweeps round an elliptic chest
wall, descending as it goes; further out it blends into a chest frame that does not follow
the curve, so a rotated scoliotic spine produces a rib hump and crowded or spread ribs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_nfdp.simulator.materials import Materials
from napari_nfdp.simulator.solids import Solids, frame, unit
from napari_nfdp.simulator.spine3d import T1, Spine

# Lateral reach and depth of rib k (1..12), relative to the widest / deepest rib.
_REACH = np.array([0.5, 0.66, 0.78, 0.86, 0.92, 0.96, 0.99, 1.0, 0.99, 0.96, 0.9, 0.82])
_DEPTH = np.array([0.5, 0.66, 0.78, 0.87, 0.93, 0.97, 1.0, 1.0, 1.0, 0.98, 0.95, 0.9])
# How far round the chest wall a rib runs (degrees from the back) and how far it drops (mm).
_END = np.array([150, 150, 148, 146, 144, 140, 136, 128, 122, 114, 96, 74], dtype=float)
_DROP = np.array([25, 50, 70, 85, 95, 100, 102, 100, 94, 82, 60, 40], dtype=float)


@dataclass(frozen=True)
class Chest:
    """Chest size (mm) in the patient frame: midline, half-width and half-depth at the widest."""

    midline: float
    width: float
    depth: float
    front: np.ndarray  # (12,) anterior Z of each rib's wall ellipse
    back: np.ndarray  # (12,) posterior Z
    level: np.ndarray  # (12,) Y of each rib's vertebra
    humeri: np.ndarray  # (2, 3) humeral head centres, image left then right


def add_thorax(out: Solids, spine: Spine, mat: Materials, rng: np.random.Generator) -> Chest:
    """Append ribs, cartilage, sternum, clavicles, scapulae and humeri; return the chest."""
    verts = spine.vertebrae
    t8 = verts[T1 + 7]
    width = t8.width * rng.uniform(3.9, 4.8)
    depth = rng.uniform(70.0, 95.0) * t8.width / 31.0
    midline = 0.5 * (verts[T1].centre[0] + verts[T1 + 12].centre[0]) + rng.normal(0, 4)
    drop = rng.uniform(0.8, 1.2)
    cortex = (rng.uniform(0.6, 0.9), mat.marrow)
    front, back, level = np.zeros(12), np.zeros(12), np.zeros(12)
    ends: dict[tuple[int, float], np.ndarray] = {}
    for k in range(12):
        v = verts[T1 + k]
        a, b = width * _REACH[k], depth * _DEPTH[k]
        for side in (-1.0, 1.0):
            local = _rib_path(v, a, b, side, _END[k] * rng.uniform(0.97, 1.03), _DROP[k] * drop)
            points = _blend(local, v, midline, rng.uniform(0.55, 0.8))
            size = rng.uniform(0.85, 1.1) * (0.8 if k >= 10 else 1.0)
            tall = (
                np.interp(
                    np.linspace(0, 1, len(points) - 1), [0, 0.15, 0.5, 1], [4.0, 4.5, 6.5, 7.0]
                )
                * size
            )
            thick = np.interp(np.linspace(0, 1, len(points) - 1), [0, 0.2, 1], [4.0, 2.8, 2.4])
            hints = _radial(points, midline)
            if k == 0:  # the first rib lies flat
                hints = np.tile([0.0, 1.0, 0.0], (len(points) - 1, 1))
                tall, thick = tall * 1.1, thick * 0.8
            out.tube(points, np.stack([thick, tall], -1), mat.cortex, hints, cortex=cortex)
            ends[(k, side)] = points
        front[k], back[k], level[k] = v.centre[2] + 2 * b - 30.0, v.centre[2] - 30.0, v.centre[1]
    chest = Chest(midline, width, depth, front, back, level, np.zeros((2, 3)))
    _cartilage(out, ends, chest, mat)
    _sternum(out, chest, mat, rng)
    chest.humeri[:] = _shoulders(out, spine, chest, mat, rng)
    return chest


def _rib_path(v, a: float, b: float, side: float, end_deg: float, drop: float) -> np.ndarray:
    """Rib points in the vertebra's local (u, v, w) frame: head, tubercle, then the wall."""
    head = np.array([side * v.width * 0.45, -0.45 * v.height, -0.25 * v.depth])
    tubercle = np.array([side * v.transverse * 0.45, -0.3 * v.height, -v.depth / 2 - 16.0])
    start = np.arcsin(np.clip((abs(tubercle[0]) + 12.0) / a, 0.0, 0.95))
    alpha = np.radians(np.linspace(np.degrees(start), end_deg, 16))
    back = tubercle[2] - 6.0
    centre = back + b * np.cos(start)
    frac = (alpha - alpha[0]) / (alpha[-1] - alpha[0])
    wall = np.stack(
        [side * a * np.sin(alpha), tubercle[1] + drop * frac**1.3, centre - b * np.cos(alpha)], -1
    )
    return np.vstack([head, tubercle, wall])


def _blend(local: np.ndarray, v, midline: float, anterior: float) -> np.ndarray:
    """Patient-frame rib points: carried by the vertebra near the spine, by the chest beyond."""
    attached = v.local(local)
    chest = local + np.array([midline, v.centre[1], v.centre[2]])
    weight = np.clip(np.linspace(-0.25, 1.0, len(local)), 0.0, 1.0)[:, None] * anterior
    return (1.0 - weight) * attached + weight * chest


def _radial(points: np.ndarray, midline: float) -> np.ndarray:
    """Per-segment outward (x, 0, z) direction from the chest's long axis."""
    mids = 0.5 * (points[1:] + points[:-1])
    centre = np.array([midline, 0.0, float(np.mean(points[:, 2]))])
    out = (mids - centre) * [1.0, 0.0, 1.0]
    return unit(out + [1e-6, 0.0, 0.0])


def _cartilage(out: Solids, ends: dict, chest: Chest, mat: Materials) -> None:
    """Costal cartilage: ribs 1-7 to the sternum, 8-10 up to the cartilage above."""
    joined: dict[tuple[int, float], np.ndarray] = {}
    for k in range(10):
        for side in (-1.0, 1.0):
            rib = ends[(k, side)]
            tip, heading = rib[-1], unit(rib[-1] - rib[-3])
            if k < 7:
                target = np.array(
                    [
                        chest.midline + side * (14.0 + 2.0 * k),
                        chest.level[0] + 12.0 + 22.0 * k,
                        chest.front[k] + 6.0,
                    ]
                )
            else:
                above = joined[(k - 1, side)]
                target = above[len(above) // 2] + [0.0, 8.0, 0.0]
            bend = tip + heading * 0.4 * np.linalg.norm(target - tip)
            t = np.linspace(0.0, 1.0, 7)[:, None]
            path = (1 - t) ** 2 * tip + 2 * (1 - t) * t * bend + t**2 * target
            out.tube(path, (4.0, 5.5), mat.cartilage, [0.0, 1.0, 0.0])
            joined[(k, side)] = path


def _sternum(out: Solids, chest: Chest, mat: Materials, rng) -> None:
    """Manubrium and body as rounded plates at the front of the chest."""
    z = chest.front[2] + 4.0
    top = chest.level[0] + 8.0
    axes = np.eye(3)
    cortex = (0.6, mat.marrow * 0.8)
    out.box([chest.midline, top + 22.0, z], axes, [24.0, 22.0, 6.0], mat.cortex, 1.2, cortex)
    length = rng.uniform(85.0, 110.0)
    tilt = frame(np.array([0.0, 0.0, 1.0]), [1.0, 0.0, 0.0])
    centre = [chest.midline, top + 46.0 + length / 2, z + 8.0]
    out.box(centre, tilt, [14.0, length / 2, 5.0], mat.cortex, 1.2, cortex)


def _shoulders(out: Solids, spine: Spine, chest: Chest, mat: Materials, rng) -> np.ndarray:
    """Clavicles, scapulae, the humeral heads and shafts (arms down); the heads' centres."""
    t1 = spine.vertebrae[T1]
    cortex = (1.5, mat.marrow)
    heads = []
    for side in (-1.0, 1.0):
        lat = chest.midline + side * (chest.width + rng.uniform(20.0, 40.0))
        acromion = np.array([lat, t1.centre[1] - rng.uniform(-5.0, 20.0), t1.centre[2] - 10.0])
        medial = np.array(
            [chest.midline + side * 22.0, chest.level[0] + rng.uniform(0, 15), chest.front[1]]
        )
        t = np.linspace(0.0, 1.0, 9)[:, None]
        path = medial + t * (acromion - medial)
        path[:, 2] += 12.0 * np.sin(np.pi * t[:, 0] * 1.4)  # the S of the clavicle
        path[:, 1] -= 8.0 * np.sin(np.pi * t[:, 0])
        out.tube(path, (6.5, 5.0), mat.cortex, [0.0, 1.0, 0.0], cortex=cortex)
        # scapula: a thin triangular plate on the back of the chest
        glenoid = acromion + [-side * 5.0, 28.0, 22.0]
        superior = np.array(
            [chest.midline + side * rng.uniform(50, 65), chest.level[1], chest.back[2] - 8.0]
        )
        inferior = np.array(
            [chest.midline + side * rng.uniform(80, 100), chest.level[7], chest.back[6] - 5.0]
        )
        _plate(out, superior, inferior, glenoid, mat)
        bow = 0.5 * (glenoid + inferior) + [side * 8.0, 0.0, -4.0]
        border = np.stack([glenoid, 0.5 * (glenoid + bow), bow, 0.5 * (bow + inferior), inferior])
        out.tube(border, (5.5, 3.5), mat.cortex * 0.7, [0.0, 0.0, 1.0], cortex=(1.0, mat.marrow))
        spine_root = superior + 0.3 * (inferior - superior) - [0.0, 0.0, 6.0]
        out.tube(
            np.stack([spine_root, 0.5 * (spine_root + acromion) - [0, 0, 8], acromion]),
            (5.0, 3.0),
            mat.cortex,
            [0.0, 1.0, 0.0],
            cortex=(1.0, mat.marrow),
        )
        out.ellipsoid(glenoid, np.eye(3), [8.0, 17.0, 12.0], mat.cortex, cortex=(1.5, mat.marrow))
        head = glenoid + [side * 24.0, 4.0, 2.0]
        out.ellipsoid(head, np.eye(3), [23.0, 23.0, 23.0], mat.cortex, cortex=(1.5, mat.marrow))
        shaft_end = head + [side * rng.uniform(0, 25), 290.0, rng.uniform(-10, 20)]
        out.cylinder(
            head + [0, 15, 0], shaft_end, (11.0, 11.0), mat.cortex, cortex=(3.5, mat.marrow)
        )
        heads.append(head)
    return np.array(heads)


def _plate(out: Solids, p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, mat: Materials):
    """A thin triangular bony plate through three points, edges rounded off."""
    centre = (p0 + p1 + p2) / 3.0
    normal = unit(np.cross(p1 - p0, p2 - p0))
    planes = [(normal, float(normal @ centre) + 1.5), (-normal, float(-normal @ centre) + 1.5)]
    for a, b in ((p0, p1), (p1, p2), (p2, p0)):
        edge_out = unit(np.cross(b - a, normal))
        if edge_out @ (centre - a) > 0:
            edge_out = -edge_out
        planes.append((edge_out, float(edge_out @ a)))
    reach = max(np.linalg.norm(p - centre) for p in (p0, p1, p2))
    axes = frame(normal, p1 - p0)
    out.ellipsoid(centre, axes, [reach, reach, 3.0], mat.cortex * 0.75, planes=planes)
