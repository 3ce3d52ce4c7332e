"""Synthetic AP spine radiographs with exact landmarks, for training, tests and demos.

Data generation, not inference: ``synthesize_spine(seed)`` renders a deterministic film and its
68 T1..L5 corner landmarks. Imports neither napari nor Qt, and ``napari_nfdp.core`` does not
import it.

- ``radiograph``: the public result type and the pipeline that assembles a film.
- ``anatomy``: the spine model, the body habitus, the view onto the film and the bones.
- ``soft_tissue``: body outline, lungs, heart and gas at the coarse level.
- ``raster``: anti-aliased drawing onto float32 layers and upsampling between levels.
- ``film``: display processing, burned-in artefacts, noise and quantisation.
"""

from napari_nfdp.simulator.radiograph import (
    CURVE_TYPES,
    MIN_SHAPE,
    SyntheticRadiograph,
    synthesize_spine,
)

__all__ = ["CURVE_TYPES", "MIN_SHAPE", "SyntheticRadiograph", "synthesize_spine"]
