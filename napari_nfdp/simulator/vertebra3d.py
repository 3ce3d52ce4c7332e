"""Solids of one vertebra in its pose: body, endplates, pedicles and posterior elements.

The body is an elliptic cylinder (flattened at the back) between the two tilted endplate
planes, with a cortical shell; each endplate is made concave by carving a shallow lens out of
the body and lining the new floor with cortex (so the projection shows the rim and the
concave floor as the familiar double contour). Pedicles are short elliptic tubes pointing
backwards (seen end-on they project as oval rings), laminae are rounded plates, the spinous,
transverse and articular processes are ellipsoids. Cervical vertebrae get lateral masses
instead of pedicles; C2 carries the dens.
"""

from __future__ import annotations

import numpy as np

from napari_nfdp.simulator.materials import Materials
from napari_nfdp.simulator.solids import Solids, frame
from napari_nfdp.simulator.spine3d import T1, Vertebra


def _metric(axes: np.ndarray, radii: np.ndarray, cylinder_axis: int | None = None):
    metric = (axes / np.asarray(radii, dtype=float)).T.copy()
    if cylinder_axis is not None:
        metric[cylinder_axis] = 0.0
    return metric


def add_vertebra(
    out: Solids, v: Vertebra, index: int, mat: Materials, rng: np.random.Generator
) -> None:
    """Append the solids of vertebra ``v`` (index 0 = C2 .. 22 = L5) to ``out``."""
    _body(out, v, mat, rng)
    if index < T1:
        _cervical(out, v, index, mat, rng)
    else:
        _posterior(out, v, index, mat, rng)


def _body(out: Solids, v: Vertebra, mat: Materials, rng: np.random.Generator) -> None:
    u, _, w = v.axes.T
    (p_top, n_top), (p_bot, n_bot) = v.top, v.bottom
    wall = rng.uniform(0.7, 1.2)
    back = (-w, float(-w @ v.centre) + 0.8 * v.depth / 2)  # flat posterior wall
    radii = (v.width / 2, v.depth / 2)
    out.cylinder(
        p_top,
        p_bot,
        radii,
        mat.cortex,
        hint=u,
        caps=(-n_top, n_bot),
        cortex=(wall, mat.cancellous),
        planes=[back],
    )
    # concave endplates: carve a lens L1 out of the body, line the floor L2 - L1 with cortex
    body_axes = frame(p_bot - p_top, u)
    outer = _metric(body_axes, (*radii, 1.0), 2)
    inner = _metric(body_axes, (radii[0] - wall, radii[1] - wall, 1.0), 2)
    outer_planes = [(n_top, float(n_top @ p_top)), (n_bot, float(n_bot @ p_bot)), back]
    inner_planes = [(n, h - wall) for n, h in outer_planes]
    for point, normal in ((p_top, n_top), (p_bot, n_bot)):
        depth = rng.uniform(1.2, 2.6) * v.height / 20.0
        lens_axes = frame(normal, u)  # a: lateral, b: antero-posterior, normal
        l1 = np.array([0.78 * v.width / 2, 0.74 * v.depth / 2, depth])
        l2 = l1 + [wall, wall, wall]
        out.ellipsoid(
            point,
            lens_axes,
            l2,
            mat.cortex - mat.cancellous,
            planes=inner_planes,
            clip=(p_top, inner),
        )
        out.ellipsoid(point, lens_axes, l1, -mat.cortex, planes=outer_planes, clip=(p_top, outer))


def _posterior(out: Solids, v: Vertebra, index: int, mat: Materials, rng) -> None:
    """Pedicles, laminae, spinous, transverse and articular processes (thoracic, lumbar)."""
    u, dv, w = v.axes.T
    lumbar = index >= T1 + 12
    level = (index - T1) / 16.0
    pw, ph = v.pedicle
    length = v.depth * rng.uniform(0.35, 0.45) + 3.0
    back = -v.depth / 2
    converge = np.radians(6.0 + 22.0 * max(0.0, level - 0.7) / 0.3)
    cortex = (rng.uniform(0.9, 1.5), mat.marrow)
    ped_v = -0.2 * v.height
    for side in (-1.0, 1.0):
        lateral = (v.canal + pw) / 2
        # pedicle: from inside the body's back to the lamina junction, converging forwards
        start = v.local([side * (lateral - np.sin(converge) * 5), ped_v, back + 5.0])
        end = v.local([side * (lateral + np.sin(converge) * length), ped_v, back - length])
        out.cylinder(start, end, (pw / 2, ph / 2), mat.cortex, hint=u, cortex=cortex)
        # articular processes above and below the pedicle's end
        for dy, reach in ((-0.5, 0.55), (0.55, 0.55)):
            centre = v.local([side * (lateral + 1.0), dy * v.height, back - length - 2.0])
            radii = np.array([pw * 0.45 + 2.5, reach * v.height * 0.5 + 2.0, 5.0])
            out.ellipsoid(centre, v.axes, radii, mat.cortex, cortex=(1.0, mat.marrow))
        # lamina: a plate from the pedicle's end to the base of the spinous process
        a = np.array([side * lateral, 0.05 * v.height, back - length])
        b = np.array([0.0, 0.1 * v.height, back - length - (7.0 if lumbar else 6.0)])
        axes = frame(v.axes @ (b - a), dv)
        out.box(
            v.local((a + b) / 2),
            axes,
            [0.42 * v.height, 3.0, np.linalg.norm(b - a) / 2],
            mat.cortex,
            rounding=1.25,
            cortex=(1.0, mat.marrow),
        )
        # transverse process: backwards and upwards in the chest, sideways in the loins
        tip = np.array(
            [
                side * v.transverse / 2,
                (-0.1 if lumbar else -0.3) * v.height,
                back - length + (2.0 if lumbar else -12.0),
            ]
        )
        root = np.array([side * (lateral + pw / 2), -0.1 * v.height, back - length])
        thick = (3.5, 5.0) if lumbar else (4.5, 5.5)
        along = v.axes @ (tip - root)
        axes = frame(along, w)
        out.ellipsoid(
            v.local((root + tip) / 2),
            axes,
            [thick[0], thick[1], np.linalg.norm(along) / 2 + 3.0],
            mat.cortex,
            cortex=(1.0, mat.marrow),
        )
    # spinous process: steeply down in the chest, straight back in the loins
    slope = np.radians(rng.uniform(-5, 10) if lumbar else 30 + 25 * np.sin(np.pi * level * 1.3))
    base = np.array([0.0, 0.1 * v.height, back - length - 6.0])
    direction = np.array([0.0, np.sin(slope), -np.cos(slope)])
    tip = base + direction * v.spinous
    axes = frame(v.axes @ direction, u)
    tall = 0.32 * v.height if lumbar else 4.5
    out.ellipsoid(
        v.local((base + tip) / 2),
        axes,
        [3.0, tall, v.spinous / 2],
        mat.cortex,
        cortex=(1.0, mat.marrow),
    )


def _cervical(out: Solids, v: Vertebra, index: int, mat: Materials, rng) -> None:
    """Lateral masses, short transverse processes and the spinous process of C2..C7."""
    u = v.axes[:, 0]
    back = -v.depth / 2
    for side in (-1.0, 1.0):
        mass = v.local([side * (v.canal / 2 + 4.0), 0.0, back - 7.0])
        out.ellipsoid(
            mass, v.axes, [5.5, v.height / 2 + 3.0, 7.0], mat.cortex, cortex=(1.0, mat.marrow)
        )
        root = v.local([side * (v.width / 2), -0.2 * v.height, back + 3.0])
        tip = v.local([side * v.transverse / 2, -0.1 * v.height, back])
        out.cylinder(root, tip, (3.0, 2.5), mat.cortex * 0.8, hint=v.axes[:, 1])
    base = np.array([0.0, 0.0, back - 14.0])
    slope = np.radians(rng.uniform(10, 35))
    direction = np.array([0.0, np.sin(slope), -np.cos(slope)])
    axes = frame(v.axes @ direction, u)
    centre = base + direction * v.spinous / 2
    out.ellipsoid(v.local(centre), axes, [3.0, 4.0, v.spinous / 2], mat.cortex * 0.8)
    if index == 0:  # C2: the dens, and the atlas around it
        dens_top = v.local([0.0, -v.height / 2 - 15.0, 1.0])
        out.cylinder(v.top[0], dens_top, (5.0, 5.0), mat.cortex, hint=u, cortex=(1.0, mat.marrow))
        out.ellipsoid(dens_top, v.axes, [5.0, 4.0, 5.0], mat.cortex * 0.8)
        _atlas(out, v, mat)


def _atlas(out: Solids, c2: Vertebra, mat: Materials) -> None:
    """C1: two lateral masses joined by thin anterior and posterior arches."""
    level = -c2.height / 2 - 10.0
    for side in (-1.0, 1.0):
        mass = c2.local([side * 17.0, level, -2.0])
        out.ellipsoid(mass, c2.axes, [7.0, 6.5, 10.0], mat.cortex, cortex=(1.2, mat.marrow))
    angles = np.linspace(0.0, 2 * np.pi, 17)
    ring = np.stack([22.0 * np.sin(angles), np.full(17, level), -4.0 - 20.0 * np.cos(angles)], -1)
    out.tube(c2.local(ring), (4.0, 2.5), mat.cortex * 0.8, c2.axes[:, 1])
