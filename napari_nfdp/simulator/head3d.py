"""Solids of the head for long films: the skull (a shell with a thick base) and the mandible
with a row of teeth. Only the lowest part ever reaches a full-spine film."""

from __future__ import annotations

import numpy as np

from napari_nfdp.simulator.materials import Materials
from napari_nfdp.simulator.solids import Solids, frame
from napari_nfdp.simulator.spine3d import Spine


def add_head(out: Solids, spine: Spine, mat: Materials, rng: np.random.Generator) -> np.ndarray:
    """Append skull, skull base, mandible and teeth above C2; return the chin point."""
    c2 = spine.vertebrae[0]
    base = c2.centre + np.array([0.0, -c2.height / 2 - 28.0, 8.0])
    nod = np.radians(rng.normal(0.0, 8.0))
    up = np.array([0.0, -np.cos(nod), np.sin(nod)])
    fwd = np.array([0.0, np.sin(nod), np.cos(nod)])
    skull_c = base + up * 70.0 + fwd * 15.0
    axes = np.eye(3)
    out.ellipsoid(skull_c, axes, [72.0, 88.0, 92.0], mat.cortex, cortex=(6.0, 0.0))
    # skull base: the petrous ridges and the occipital condyles
    for side in (-1.0, 1.0):
        ridge = np.stack(
            [base + up * 20 + [side * 15.0, 0, 5.0], base + up * 28 + [side * 55.0, 0, -5.0]]
        )
        out.tube(ridge, (9.0, 7.0), mat.cortex, [0.0, 1.0, 0.0], cortex=(2.0, mat.cortex * 0.5))
        out.ellipsoid(
            base + [side * 14.0, 4.0, -2.0],
            axes,
            [7.0, 6.0, 11.0],
            mat.cortex,
            cortex=(1.5, mat.marrow),
        )
        mastoid = base + up * 10 + [side * 50.0, 0.0, -12.0]
        out.ellipsoid(mastoid, axes, [9.0, 14.0, 10.0], mat.cortex * 0.6)
    # mandible: a U-shaped body and two rami, teeth along the top of the body
    chin_drop = rng.uniform(35.0, 50.0)
    t = np.linspace(-1.0, 1.0, 11)
    arch = np.stack(
        [50.0 * np.sin(1.3 * t), np.full_like(t, chin_drop), 85.0 * np.cos(1.3 * t)], -1
    )
    body = base + arch @ np.stack([np.array([1.0, 0.0, 0.0]), -up, fwd])
    out.tube(body, (8.0, 5.0), mat.cortex, np.tile(up, (10, 1)), cortex=(2.0, mat.marrow))
    teeth = body + up * 14.0
    out.tube(teeth[1:-1], (7.0, 5.0), mat.cortex * 1.6, np.tile(up, (8, 1)))
    for end in (body[0], body[-1]):
        top = end + up * 55.0 - fwd * 12.0
        out.box(0.5 * (end + top), frame(top - end, fwd), [12.0, 3.0, 28.0], mat.cortex * 0.8)
    return body[len(body) // 2]
