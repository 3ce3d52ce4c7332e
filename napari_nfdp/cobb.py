"""Public Cobb-angle API (AASCE challenge algorithm); see :mod:`napari_nfdp.core.cobb`."""

from napari_nfdp.core.cobb import CobbError, CobbResult, Curve, cobb_angles

__all__ = ["CobbError", "CobbResult", "Curve", "cobb_angles"]
