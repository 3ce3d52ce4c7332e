"""Landmark schemas: names and groupings of the landmarks a model predicts."""

from __future__ import annotations

SPINE_VERTEBRAE: tuple[str, ...] = tuple(f"T{i}" for i in range(1, 13)) + tuple(
    f"L{i}" for i in range(1, 6)
)
SPINE_CORNERS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")
SPINE_LANDMARK_NAMES: tuple[str, ...] = tuple(
    f"{vertebra}-{corner}" for vertebra in SPINE_VERTEBRAE for corner in SPINE_CORNERS
)


def generic_landmark_names(k: int) -> tuple[str, ...]:
    """Names "P01".."Pk" for a schema without anatomical names."""
    if k < 1:
        raise ValueError(f"a model needs at least one landmark, got {k}")
    width = max(2, len(str(k)))
    return tuple(f"P{i:0{width}d}" for i in range(1, k + 1))


def default_landmark_names(k: int) -> tuple[str, ...]:
    """The spine names for 68 landmarks, generic names otherwise."""
    return SPINE_LANDMARK_NAMES if k == len(SPINE_LANDMARK_NAMES) else generic_landmark_names(k)


def vertebra_range(upper: int, lower: int) -> str:
    """Text for a run of vertebrae by index (0 = T1 .. 16 = L5), e.g. "T5-T12"."""
    return f"{SPINE_VERTEBRAE[upper]}-{SPINE_VERTEBRAE[lower]}"
