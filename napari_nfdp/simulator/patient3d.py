"""One random patient in 3-D: the spine, the skeleton around it and the soft tissue."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_nfdp.simulator.conebeam import Loft
from napari_nfdp.simulator.head3d import add_head
from napari_nfdp.simulator.materials import Materials
from napari_nfdp.simulator.pelvis3d import Pelvis, add_pelvis
from napari_nfdp.simulator.soft3d import add_soft
from napari_nfdp.simulator.solids import Solids
from napari_nfdp.simulator.spine3d import Spine, build_spine
from napari_nfdp.simulator.thorax3d import Chest, add_thorax
from napari_nfdp.simulator.vertebra3d import add_vertebra


@dataclass(frozen=True)
class Patient:
    """The patient in the patient frame (X image right, Y feet, Z towards the source; mm)."""

    spine: Spine
    chest: Chest
    pelvis: Pelvis
    materials: Materials
    solids: Solids
    lofts: list[Loft]


def build_patient(
    rng: np.random.Generator,
    curve: str,
    cobb: float,
    rotation: float | None = None,
    head: bool = True,
) -> Patient:
    """Draw a patient whose spine has ``curve`` of ``cobb`` degrees.

    ``rotation`` is the apical axial rotation per degree of Cobb (None: drawn); ``head=False``
    leaves out the skull and mandible (for films that cannot reach them).
    """
    spine = build_spine(rng, curve, cobb, per_degree=rotation)
    mat = Materials.random(rng)
    solids = Solids()
    for i, vertebra in enumerate(spine.vertebrae):
        add_vertebra(solids, vertebra, i, mat, rng)
    chest = add_thorax(solids, spine, mat, rng)
    pelvis = add_pelvis(solids, spine, mat, rng)
    if head:
        add_head(solids, spine, mat, rng)
    lofts = add_soft(solids, spine, chest, pelvis, mat, rng)
    return Patient(spine, chest, pelvis, mat, solids, lofts)
