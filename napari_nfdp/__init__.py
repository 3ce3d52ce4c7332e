"""napari-nfdp: NFDP landmark localization and Cobb angles on radiographs.

The public names are imported lazily so that ``import napari_nfdp`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Localizer": "napari_nfdp.core.localizer",
    "Prediction": "napari_nfdp.core.localizer",
    "cobb_angles": "napari_nfdp.core.cobb",
}

__all__ = ["Localizer", "Prediction", "cobb_angles", "__version__"]

if TYPE_CHECKING:
    from napari_nfdp.core.cobb import cobb_angles
    from napari_nfdp.core.localizer import Localizer, Prediction


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_nfdp' has no attribute {name!r}")
