"""Soft tissue: the body outline with its fat layer, arms, thighs, lungs with the heart and
the diaphragm carved out, the airway and gas in the stomach and bowel.

Smooth bodies are ``Loft``s (elliptic cross-sections along Y, see ``conebeam``); gas pockets
and bronchi are analytic solids. Values follow ``Materials`` (relative to water, except the
outer body outline which carries water itself).
"""

from __future__ import annotations

import numpy as np

from napari_nfdp.simulator.conebeam import Loft
from napari_nfdp.simulator.materials import Materials
from napari_nfdp.simulator.pelvis3d import Pelvis
from napari_nfdp.simulator.solids import Solids, frame, unit
from napari_nfdp.simulator.spine3d import T1, Spine
from napari_nfdp.simulator.thorax3d import _REACH, Chest

_STEP = 4.0  # mm between loft cross-sections


def _loft(y, knots_y, xc, zc, a, b, density, holes=None) -> Loft:
    """A loft sampled at ``y`` from knot values (linear between knots, 0 outside)."""
    inside = (y >= knots_y[0]) & (y <= knots_y[-1])
    vals = [np.interp(y, knots_y, v) for v in (xc, zc, a, b)]
    vals[2] = np.where(inside, vals[2], 0.0)
    vals[3] = np.where(inside, vals[3], 0.0)
    return Loft(y, *vals, density=density, holes=holes or [])


def add_soft(
    out: Solids,
    spine: Spine,
    chest: Chest,
    pelvis: Pelvis,
    mat: Materials,
    rng: np.random.Generator,
) -> list[Loft]:
    """Append gas and airway solids to ``out``; return the soft-tissue lofts."""
    verts = spine.vertebrae
    yv = np.array([v.centre[1] for v in verts])
    zv = np.array([v.centre[2] for v in verts])
    hip_y = float(pelvis.hips[:, 1].mean())
    y = np.arange(yv[0] - 220.0, hip_y + 520.0, _STEP)
    z_spine = np.interp(y, yv, zv, left=zv[0], right=zv[-1])
    mid = chest.midline
    fat = rng.uniform(4.0, 40.0)
    chest_b = chest.depth + 12.0
    waist_a = chest.width * rng.uniform(0.8, 1.0) + fat
    belly_b = rng.uniform(80.0, 115.0) * chest.depth / 80.0 + fat
    head_z = zv[0] + 25.0
    knots = np.array(
        [
            [yv[0] - 200, mid, head_z, 25, 30],
            [yv[0] - 160, mid, head_z, 65, 80],
            [yv[0] - 95, mid, head_z, 74, 95],
            [yv[0] - 35, mid, head_z, 66, 85],
            [yv[0] + 15, mid, zv[0] + 20, 54 + fat / 3, 56 + fat / 3],
            [yv[T1 - 2], mid, zv[T1 - 2] + 22, 58 + fat / 2, 60 + fat / 2],
            [yv[T1 - 1], mid, zv[T1 - 1] + 26, 72 + fat / 2, 66 + fat / 2],
            [yv[T1] - 4, mid, zv[T1] + 32, chest.width * 0.8 + fat, chest_b * 0.7 + fat],
            [yv[T1 + 1], mid, zv[T1 + 1] + 38, chest.width + 24 + fat, chest_b * 0.8 + fat],
            [yv[T1 + 4], mid, zv[T1 + 4] + chest_b - 45, chest.width + 16 + fat, chest_b + fat],
            [yv[T1 + 8], mid, zv[T1 + 8] + chest_b - 45, chest.width + 14 + fat, chest_b + fat],
            [yv[T1 + 12], mid, zv[T1 + 12] + belly_b - 55, chest.width * 0.95 + fat, belly_b],
            [yv[T1 + 14], mid, zv[T1 + 14] + belly_b - 60, waist_a, belly_b],
            [pelvis.crest, mid, zv[-1] + belly_b - 60, pelvis.half_width * 0.92 + fat, belly_b],
            [hip_y, mid, zv[-1] + belly_b - 70, pelvis.half_width + 20 + fat, belly_b - 5],
            [hip_y + 100, mid, zv[-1] + belly_b - 80, pelvis.half_width + 5 + fat, belly_b - 15],
        ]
    )
    ky, kx, kz, ka, kb = knots.T
    lofts = [
        _loft(y, ky, kx, kz, ka, kb, mat.water + mat.fat),
        _loft(y, ky, kx, kz, np.maximum(ka - fat, 10), np.maximum(kb - fat, 10), -mat.fat),
    ]
    for side, (hip, head) in enumerate(zip(pelvis.hips, chest.humeri, strict=True)):
        sign = -1.0 if side == 0 else 1.0
        thigh_y = np.array([hip_y + 100, hip_y + 500])
        lofts.append(
            _loft(
                y,
                thigh_y,
                [hip[0] - sign * 5] * 2,
                [hip[2] + 10] * 2,
                [75 + fat / 2, 60 + fat / 2],
                [80 + fat / 2, 65 + fat / 2],
                mat.water + mat.fat,
            )
        )
        arm_y = np.array([head[1] + 30, head[1] + 280, head[1] + 300, head[1] + 540])
        arm_a = np.array([46.0, 40.0, 36.0, 30.0]) + fat / 3
        edge = mid + sign * (chest.width + 20.0 + fat + 0.7 * arm_a)
        arm_x = sign * np.maximum(sign * edge, sign * head[0]) + sign * np.array([0, 6, 6, 12])
        lofts.append(
            _loft(
                y,
                arm_y,
                arm_x,
                [head[2]] * 4,
                arm_a,
                arm_a * [1.05, 1.05, 1, 0.8],
                mat.water + mat.fat,
            )
        )
    lofts += _lungs(out, y, spine, chest, mat, rng, z_spine)
    lofts.append(_airway(out, y, spine, mid, mat, rng))
    _gas(out, spine, chest, pelvis, mat, rng, belly_b)
    return lofts


def _lungs(out, y, spine: Spine, chest: Chest, mat: Materials, rng, z_spine) -> list[Loft]:
    """Two lungs inside the rib cage, with the heart, aortic knob and domes carved out."""
    verts = spine.vertebrae
    top = verts[T1].top[0][1] - rng.uniform(5.0, 22.0)
    bottom = verts[T1 + 11].centre[1] + rng.uniform(0.0, 25.0)
    rib_y = chest.level + np.linspace(15.0, 50.0, 12)
    reach = chest.width * np.interp(y, rib_y, _REACH) - 12.0
    depth = chest.depth * np.interp(y, rib_y, np.linspace(0.55, 1.0, 12)) * 0.85
    rise = np.clip((y - top) / 30.0, 0.0, 1.0)
    apex = np.sqrt(1.0 - (1.0 - rise) ** 2)  # a rounded dome at the apex
    base = np.sqrt(np.clip((bottom - y) / 20.0, 0.0, 1.0))
    shape = apex * base
    heart_side = 1.0 if rng.random() < 0.92 else -1.0
    dome = verts[T1 + 9].centre[1] + rng.normal(0.0, 12.0)
    zc = z_spine + depth * 0.9 - 10.0
    heart_c = np.array(
        [
            chest.midline + heart_side * rng.uniform(25.0, 42.0),
            dome - rng.uniform(35.0, 50.0),
            np.interp(dome, y, zc) + 25.0,
        ]
    )
    radii = np.array([rng.uniform(52, 66), rng.uniform(46, 56), rng.uniform(42, 52)])
    tilt = np.radians(heart_side * rng.uniform(25, 45))
    axes = frame(np.array([0.0, 0.0, 1.0]), [np.cos(tilt), np.sin(tilt), 0.0])
    heart = (heart_c, (axes / radii).T)
    knob_c = np.array(
        [chest.midline + heart_side * 28.0, verts[T1 + 3].centre[1], verts[T1 + 3].centre[2] + 10.0]
    )
    knob = (knob_c, np.eye(3) / rng.uniform(14.0, 19.0))
    lofts = []
    for side in (-1.0, 1.0):
        medial = np.interp(
            y,
            [top, verts[T1 + 3].centre[1], heart_c[1], bottom],
            rng.uniform([14, 22, 18, 16], [20, 32, 26, 22]),
        )
        a = np.maximum((reach - medial) / 2, 1.0) * shape
        xc = chest.midline + side * (medial + reach) / 2
        lift = 0.0 if side == -heart_side else rng.uniform(12.0, 25.0)
        dome_r = np.array([rng.uniform(70, 90), rng.uniform(55, 70), chest.depth * 1.1])
        dome_c = np.array(
            [
                chest.midline + side * rng.uniform(55.0, 75.0),
                dome + lift + dome_r[1],
                np.interp(dome, y, zc),
            ]
        )
        holes = [(dome_c, np.diag(1.0 / dome_r)), heart]
        if side == heart_side:
            holes.append(knob)
        present = (y >= top) & (y <= bottom)
        lofts.append(
            Loft(
                y,
                xc,
                zc,
                np.where(present, a, 0.0),
                np.where(present, depth * shape, 0.0),
                mat.lung,
                holes,
            )
        )
        hilum = np.array(
            [
                chest.midline + side * rng.uniform(40, 55),
                verts[T1 + 5].centre[1] + rng.uniform(-10, 15),
                verts[T1 + 5].centre[2] + rng.uniform(15, 35),
            ]
        )
        _vessels(out, hilum, side, -mat.lung * 0.9, rng)
    return lofts


def _vessels(out: Solids, hilum: np.ndarray, side: float, density: float, rng) -> None:
    """Branching vessel trees from the hilum into one lung (the lung markings)."""
    stack = []
    for angle in rng.uniform([-80, -25, 20, 60], [-45, 15, 55, 95]):
        ang = np.radians(angle)
        heading = np.array([side * np.cos(ang), np.sin(ang), rng.normal(0, 0.3)])
        stack.append((hilum, unit(heading), 3.5, rng.uniform(22, 32), 0))
    while stack:
        start, heading, radius, length, depth = stack.pop()
        bend = unit(heading + rng.normal(0, 0.25, 3))  # vessels wander: two bent segments
        mid = start + heading * length / 2
        end = mid + bend * length / 2
        out.tube(np.stack([start, mid, end]), (radius, radius), density, [0.0, 0.0, 1.0])
        if depth < 5:
            for turn in (-1.0, 1.0):
                ang = turn * np.radians(rng.uniform(12, 40))
                c, s = np.cos(ang), np.sin(ang)
                new = np.array(
                    [
                        c * bend[0] - s * bend[1],
                        s * bend[0] + c * bend[1],
                        bend[2] + rng.normal(0, 0.3),
                    ]
                )
                if rng.random() < 0.9 or depth < 2:
                    stack.append(
                        (
                            end,
                            unit(new),
                            radius * rng.uniform(0.65, 0.8),
                            length * rng.uniform(0.6, 0.85),
                            depth + 1,
                        )
                    )


def _airway(out: Solids, y, spine: Spine, mid: float, mat: Materials, rng) -> Loft:
    """The trachea (a loft) from C5 to the carina and the two main bronchi (solids)."""
    verts = spine.vertebrae
    yv = np.array([v.centre[1] for v in verts])
    front = np.array([v.centre[2] + v.depth / 2 for v in verts]) + 14.0
    top, carina = yv[3], yv[T1 + 3] + rng.uniform(0, 20)
    radius = rng.uniform(7.0, 10.0)
    xc = mid + rng.normal(0, 3) + 4.0 * np.sin(np.clip((y - top) / (carina - top), 0, 1) * 3.0)
    present = (y >= top) & (y <= carina)
    loft = Loft(
        y,
        xc,
        np.interp(y, yv, front),
        np.where(present, radius, 0.0),
        np.where(present, radius * 0.9, 0.0),
        mat.air,
    )
    split = np.array([np.interp(carina, y, xc), carina, np.interp(carina, yv, front)])
    for side, angle in ((-1.0, 25.0), (1.0, 45.0)):
        ang = np.radians(angle + rng.normal(0, 5))
        end = split + np.array([side * np.sin(ang), np.cos(ang), -0.1]) * 45.0
        out.cylinder(split, end, (radius * 0.7,) * 2, mat.air * 0.9)
    return loft


def _gas(out: Solids, spine: Spine, chest: Chest, pelvis: Pelvis, mat, rng, belly_b) -> None:
    """A stomach bubble and scattered gas pockets along the colon and in the small bowel."""
    verts = spine.vertebrae
    mid = chest.midline
    l1, l3 = verts[T1 + 12].centre, verts[T1 + 14].centre
    front = l3[2] + belly_b - 60.0
    if rng.random() < 0.7:
        c = np.array([mid + 65.0, verts[T1 + 11].centre[1] - 5.0, l1[2] + 40.0])
        level = (np.array([0.0, 1.0, 0.0]), c[1] + rng.uniform(-8.0, 10.0))
        out.ellipsoid(
            c, np.eye(3), rng.uniform([25, 18, 22], [45, 30, 35]), mat.air * 0.95, planes=[level]
        )
    hip_y = float(pelvis.hips[:, 1].mean())
    frame_pts = np.array(
        [
            [mid - 75, hip_y - 50, front - 40],
            [mid - 80, l1[1] + 20, front - 45],
            [mid - 30, l3[1] + 10, front - 25],
            [mid + 30, l3[1] + 5, front - 25],
            [mid + 85, l1[1] - 5, front - 50],
            [mid + 80, pelvis.crest + 10, front - 50],
            [mid + 35, hip_y - 30, front - 40],
            [mid, hip_y + 10, l3[2] - 10],
        ]
    )
    t = np.linspace(0.0, 1.0, len(frame_pts))
    for _ in range(int(rng.integers(0, 7))):  # colon gas: short runs of small pockets
        where = rng.uniform(0.0, 1.0)
        c = np.array([np.interp(where, t, frame_pts[:, k]) for k in range(3)])
        step = unit(np.array([np.interp(where + 0.02, t, frame_pts[:, k]) for k in range(3)]) - c)
        fill = mat.air * rng.uniform(0.3, 0.8)
        for _ in range(int(rng.integers(1, 5))):
            radii = rng.uniform([6, 5, 8], [16, 13, 18])
            out.ellipsoid(c + rng.normal(0.0, 3.0, 3), frame(step, [0.0, 0.0, 1.0]), radii, fill)
            c = c + step * rng.uniform(14.0, 24.0)
    for _ in range(int(rng.integers(0, 8))):
        c = np.array([mid + rng.normal(0, 45), rng.uniform(l1[1], hip_y), front - 30.0])
        out.ellipsoid(c, np.eye(3), rng.uniform(4.0, 9.0, 3), mat.air * rng.uniform(0.3, 0.8))
