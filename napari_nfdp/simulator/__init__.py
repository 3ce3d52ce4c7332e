"""Synthetic AP spine radiographs with exact landmarks, for training, tests and demos.

Data generation, not inference: ``synthesize_spine(seed)`` renders a deterministic film and its
68 T1..L5 corner landmarks. Imports neither napari nor Qt, and ``napari_nfdp.core`` does not
import it.

- ``radiograph``: the public result type and the pipeline that assembles a film.
- ``anatomy``: the spine model, the body habitus, the view onto the film and the bones.
- ``soft_tissue``: body outline, lungs, heart and gas at the coarse level.
- ``raster``: anti-aliased drawing onto float32 layers and upsampling between levels.
- ``film``: display processing, burned-in artefacts, noise and quantisation.

The projected style, ``simulate_projected(seed)``, builds a 3-D patient from analytic solids
(``solids``, ``spine3d``, ``vertebra3d``, ``thorax3d``, ``pelvis3d``, ``head3d``, ``soft3d``,
``patient3d``), integrates attenuation along cone-beam rays (``conebeam``) and makes a film
of it (``detector``, ``materials``) in a random field of view (``projected``); ``preview``
draws a contact sheet.
"""

from napari_nfdp.simulator.projected import FIELDS, SimulatedFilm, simulate_projected
from napari_nfdp.simulator.radiograph import (
    CURVE_TYPES,
    MIN_SHAPE,
    SyntheticRadiograph,
    synthesize_spine,
)

__all__ = [
    "CURVE_TYPES",
    "FIELDS",
    "MIN_SHAPE",
    "SimulatedFilm",
    "SyntheticRadiograph",
    "simulate_projected",
    "synthesize_spine",
]
