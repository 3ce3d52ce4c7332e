"""Which saved annotations are human corrections, and reading their images for fine-tuning.

One rule for the dock widget and ``python -m training finetune``: a sidecar counts as a
correction when at least one of its points has the source ``"human"`` (a person placed or moved
it), its landmark names are the model's, and it has a visible point. Model output nobody touched
does not count. An image without a sidecar but with 3D Slicer markups beside it
(``<stem>.mrk.json``) counts by the same rule (points placed or moved in Slicer are human). A
sidecar or image that cannot be read is skipped with a note naming it; it never stops the
others. Imports neither napari nor Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_nfdp.core.messages import describe_error
from napari_nfdp.io.annotations import Annotation, find_sidecar, read_annotation
from napari_nfdp.io.images import read_image
from napari_nfdp.io.markups import MARKUPS_SUFFIX, find_markups, read_film_markups

HUMAN = "human"


@dataclass(frozen=True)
class Correction:
    """A saved image with human corrections: the image file and its sidecar (or markups)."""

    image: Path
    sidecar: Path
    annotation: Annotation


def is_correction(annotation: Annotation) -> bool:
    """True when a person placed or moved at least one point of ``annotation``."""
    return HUMAN in annotation.source


def find_corrections(
    images: Sequence[str | Path],
    annotation_folder: str | Path | None,
    names: Sequence[str],
) -> tuple[list[Correction], list[str]]:
    """The images whose sidecar holds human corrections for the landmarks ``names``.

    A sidecar is looked up in ``annotation_folder`` first, then next to the image, then 3D
    Slicer markups next to the image (:func:`~napari_nfdp.io.markups.find_markups`). Images
    without a sidecar, and sidecars with model points only, are left out silently; sidecars
    that cannot be read (any error), have other landmarks or no visible point are left out
    with a note. Returns the corrections (in image order, duplicates once) and the notes.
    """
    found: list[Correction] = []
    notes: list[str] = []
    for image in dict.fromkeys(Path(p) for p in images):
        sidecar = find_sidecar(image, annotation_folder) or find_markups(image)
        if sidecar is None:
            continue
        try:
            if sidecar.name.endswith(MARKUPS_SUFFIX):
                ann = read_film_markups(sidecar, image, names=names)[0]
            else:
                ann = read_annotation(sidecar)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
            notes.append(f"skipped {sidecar.name}: {describe_error(error, sidecar.name)}")
            continue
        if not is_correction(ann):
            continue
        if tuple(ann.landmark_names) != tuple(names):
            notes.append(f"skipped {sidecar.name}: its landmarks differ from the model's")
            continue
        if not np.isfinite(ann.points).all(axis=1).any():
            notes.append(f"skipped {sidecar.name}: it has no visible landmark")
            continue
        found.append(Correction(image, sidecar, ann))
    return found, notes


@dataclass
class CorrectedImages:
    """The corrections whose image could be read, with their pixels and landmarks."""

    corrections: list[Correction] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the images skipped, and why
    cancelled: bool = False  # ``should_stop`` asked to stop before all were read


def read_corrections(
    corrections: Sequence[Correction],
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CorrectedImages:
    """Read the images of ``corrections``; unreadable ones and size mismatches become notes.

    ``progress(index, total)`` (1-based) is called before each image; ``should_stop`` is polled
    before each image and stops reading (``cancelled`` set).
    """
    result = CorrectedImages()
    total = len(corrections)
    for index, item in enumerate(corrections, start=1):
        if should_stop is not None and should_stop():
            result.cancelled = True
            return result
        if progress is not None:
            progress(index, total)
        name = item.image.name
        try:
            image, _ = read_image(item.image)
        except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
            result.notes.append(f"skipped {name}: {describe_error(error, name)}")
            continue
        if tuple(image.shape[:2]) != tuple(item.annotation.image_shape):
            result.notes.append(f"skipped {name}: its size differs from its annotation")
            continue
        result.corrections.append(item)
        result.images.append(image)
        result.landmarks.append(item.annotation.points)
    return result
