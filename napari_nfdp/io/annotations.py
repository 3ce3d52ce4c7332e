"""Landmark annotations: one JSON sidecar per image, written atomically, and CSV export.

A sidecar ``<image file name>.nfdp.json`` lives next to the image or in an annotation folder::

    {"format": "napari-nfdp-annotation", "version": 1,
     "image_name": "film.png", "image_shape": [H, W],
     "landmark_names": [...K names...],
     "points": [[row, col], [null, null], ...],      # image pixels; null = missing / not visible
     "source": ["model" | "human", ...],             # who placed each point
     "sigma": [[row, col], ...] | null,              # model uncertainty in image pixels
     "spacing": [row_mm, col_mm] | null, "model": "checkpoint id" | null,
     "spacing_source": "PixelSpacing" | ... | null,  # the DICOM element the spacing came from
     "updated": "ISO 8601 time"}
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from napari_nfdp.core.atomic import atomic_write
from napari_nfdp.core.session import LandmarkSession

FORMAT_TAG = "napari-nfdp-annotation"
FORMAT_VERSION = 1
SIDECAR_SUFFIX = ".nfdp.json"
TABLE_SUFFIX = ".nfdp.csv"  # a landmark table napari-nfdp reads back (see read_landmarks_csv)
SOURCES: tuple[str, ...] = ("model", "human")
CSV_COLUMNS: tuple[str, ...] = (
    "image",
    "landmark",
    "row",
    "col",
    "row_mm",
    "col_mm",
    "sigma_row",
    "sigma_col",
    "visible",
    "source",
    "model",
)
_REQUIRED = ("image_name", "image_shape", "landmark_names", "points", "source")
MAX_SIDECAR_BYTES = 20_000_000  # a sidecar of thousands of landmarks is a few hundred kB
MAX_TABLE_BYTES = 200_000_000  # a landmark table of 10 000 films is about 70 MB
FAR_OUTSIDE = 10.0  # points beyond this many image sizes off the film are not plausible


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Annotation:
    """The landmarks of one image, in (row, col) image pixels; NaN rows are missing points."""

    image_name: str
    image_shape: tuple[int, int]
    landmark_names: tuple[str, ...]
    points: np.ndarray
    source: list[str]
    sigma: np.ndarray | None = None
    spacing: tuple[float, float] | None = None
    model: str | None = None
    updated: str = field(default_factory=_now)
    spacing_source: str | None = None  # absent from sidecars written before it: None

    def __post_init__(self) -> None:
        self.image_shape = tuple(int(n) for n in self.image_shape)
        if len(self.image_shape) != 2 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (H, W) > 0, got {self.image_shape}")
        self.landmark_names = tuple(str(n) for n in self.landmark_names)
        k = len(self.landmark_names)
        self.points = _points_array(self.points, k, "points")
        if self.sigma is not None:
            self.sigma = _points_array(self.sigma, k, "sigma")
            if (self.sigma < 0).any():
                raise ValueError("sigma holds negative values")
        self.source = [str(s) for s in self.source]
        if len(self.source) != k:
            raise ValueError(f"source has {len(self.source)} entries for {k} landmarks")
        unknown = sorted(set(self.source) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown point source(s) {unknown}; expected one of {SOURCES}")
        if self.spacing is not None:
            self.spacing = tuple(float(s) for s in self.spacing)
            if len(self.spacing) != 2 or not all(math.isfinite(s) and s > 0 for s in self.spacing):
                raise ValueError(f"spacing must be two positive numbers, got {self.spacing}")
        if self.spacing_source is not None and not isinstance(self.spacing_source, str):
            raise ValueError(f"spacing_source must be text, got {self.spacing_source!r}")
        if self.spacing is None or not self.spacing_source:
            self.spacing_source = None  # no spacing, no source


def _points_array(values: Any, k: int, what: str) -> np.ndarray:
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers (or null), {exc}") from exc
    if k == 0 and array.size == 0:
        array = array.reshape(0, 2)
    if array.shape != (k, 2):
        raise ValueError(f"{what} must have shape ({k}, 2) for {k} landmarks, got {array.shape}")
    if np.isinf(array).any():
        raise ValueError(f"{what} holds infinite values")
    return array


def sidecar_path(image_path: str | Path, folder: str | Path | None = None) -> Path:
    """The sidecar of an image: ``<image name>.nfdp.json`` next to it, or in ``folder``."""
    image_path = Path(image_path)
    parent = Path(folder) if folder is not None else image_path.parent
    return parent / (image_path.name + SIDECAR_SUFFIX)


def find_sidecar(
    image_path: str | Path, annotation_folder: str | Path | None = None
) -> Path | None:
    """The existing sidecar of an image: in ``annotation_folder`` first, else next to it."""
    candidates = [sidecar_path(image_path, annotation_folder)] if annotation_folder else []
    candidates.append(sidecar_path(image_path))
    return next((c for c in candidates if c.is_file()), None)


def _pairs(array: np.ndarray | None) -> list[list[float | None]] | None:
    if array is None:
        return None
    return [[None if math.isnan(v) else float(v) for v in row] for row in array.tolist()]


def annotation_to_dict(ann: Annotation) -> dict[str, Any]:
    """The JSON-ready dictionary of the sidecar format (NaN -> null)."""
    return {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "image_name": ann.image_name,
        "image_shape": list(ann.image_shape),
        "landmark_names": list(ann.landmark_names),
        "points": _pairs(ann.points),
        "source": list(ann.source),
        "sigma": _pairs(ann.sigma),
        "spacing": None if ann.spacing is None else list(ann.spacing),
        "spacing_source": ann.spacing_source,
        "model": ann.model,
        "updated": ann.updated,
    }


def annotation_from_dict(data: Any) -> Annotation:
    """Validate a decoded sidecar and build its :class:`Annotation` (ValueError if malformed)."""
    if not isinstance(data, dict):
        raise ValueError("the file is not a JSON object")
    if data.get("format") != FORMAT_TAG:
        raise ValueError(f"not a napari-nfdp annotation (format {data.get('format')!r})")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"unsupported annotation version {data.get('version')!r} (this code reads "
            f"version {FORMAT_VERSION}; a newer napari-nfdp may have written it)"
        )
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    names = data["landmark_names"]
    points = data["points"]
    if not isinstance(names, list) or not isinstance(points, list):
        raise ValueError("landmark_names and points must be lists")
    try:
        ann = Annotation(
            image_name=str(data["image_name"]),
            image_shape=tuple(data["image_shape"]),
            landmark_names=tuple(names),
            points=_nulls_to_nan(points),
            source=data["source"],
            sigma=None if data.get("sigma") is None else _nulls_to_nan(data["sigma"]),
            spacing=None if data.get("spacing") is None else tuple(data["spacing"]),
            spacing_source=data.get("spacing_source"),
            model=None if data.get("model") is None else str(data["model"]),
            updated=str(data.get("updated", "")),
        )
    except TypeError as exc:
        raise ValueError(f"malformed field ({exc})") from exc
    _check_plausible(ann)
    return ann


def _check_plausible(ann: Annotation) -> None:
    """Refuse points (or sigma) far outside the image: no viewer could show them."""
    size = np.array(ann.image_shape, dtype=float)
    far = np.abs(ann.points - size / 2) > FAR_OUTSIDE * size
    if far.any():
        row = int(np.flatnonzero(far.any(axis=1))[0])
        raise ValueError(
            f"point {ann.landmark_names[row]} at {ann.points[row].tolist()} lies far outside "
            f"the {ann.image_shape[0]} x {ann.image_shape[1]} image"
        )
    if ann.sigma is not None and (ann.sigma > FAR_OUTSIDE * size.max()).any():
        raise ValueError("sigma holds implausibly large values")


def _nulls_to_nan(rows: Any) -> list[Any]:
    if not isinstance(rows, list):
        raise ValueError(f"expected a list of [row, col] pairs, got {type(rows).__name__}")
    return [
        [math.nan if v is None else v for v in row] if isinstance(row, list) else row
        for row in rows
    ]


def write_annotation(path: str | Path, ann: Annotation) -> Path:
    """Write a sidecar atomically: a failed write leaves any previous file untouched."""
    payload = annotation_to_dict(ann)
    return atomic_write(
        path, lambda fh: json.dump(payload, fh, indent=1, allow_nan=False), text=True
    )


def read_json(path: str | Path, what: str) -> Any:
    """A small JSON file's content; a file too large or not JSON raises ValueError naming it
    as ``what`` (FileNotFoundError when there is no file)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"it is larger than {MAX_SIDECAR_BYTES // 1_000_000} MB")
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path.name}: not a readable {what} ({_brief(exc)})") from exc


def read_annotation(path: str | Path) -> Annotation:
    """Read and validate a sidecar; whatever is wrong with it raises ValueError naming it.

    (FileNotFoundError when there is no file.) Deep nesting, huge numbers and coordinates far
    outside the image are all "not readable", never another exception type.
    """
    path = Path(path)
    data = read_json(path, "annotation file")
    try:
        return annotation_from_dict(data)
    except (ValueError, TypeError, OverflowError, RecursionError, AttributeError) as exc:
        raise ValueError(f"{path.name}: {_brief(exc)}") from exc


def _brief(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if isinstance(error, RecursionError):
        text = "nested too deeply"
    return text if len(text) <= 200 else text[:200] + "…"


def export_landmarks_csv(path: str | Path, rows: Iterable[Annotation]) -> Path:
    """Write one CSV line per landmark (see ``CSV_COLUMNS``); missing values are empty cells.

    Pixels are (row, col) of the image; the mm columns are filled when the spacing is known,
    sigma is the model's uncertainty in pixels, ``visible`` is 0 for a point marked not visible.
    """

    def number(value: float, digits: int = 3) -> str:
        return "" if math.isnan(value) else f"{value:.{digits}f}"

    def write(fh: IO[str]) -> None:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for ann in rows:
            k = len(ann.landmark_names)
            sigma = ann.sigma if ann.sigma is not None else np.full((k, 2), np.nan)
            scale = np.asarray(ann.spacing) if ann.spacing else np.full(2, np.nan)
            for i, name in enumerate(ann.landmark_names):
                point, mm = ann.points[i], ann.points[i] * scale
                writer.writerow(
                    [
                        ann.image_name,
                        name,
                        number(point[0]),
                        number(point[1]),
                        number(mm[0], 4),
                        number(mm[1], 4),
                        number(sigma[i, 0]),
                        number(sigma[i, 1]),
                        int(np.isfinite(point).all()),
                        ann.source[i],
                        ann.model or "",
                    ]
                )

    return atomic_write(path, write, text=True)


def read_landmarks_csv(path: str | Path) -> list[Annotation]:
    """The annotations of a landmark table (:func:`export_landmarks_csv`), one per image, in
    the order of the table; whatever is wrong with it raises ValueError naming it.

    A table does not record image sizes: ``image_shape`` is the extent of the points. Empty
    row / col cells (or ``visible`` 0) are points marked not visible; ``source`` defaults to
    "human"; the spacing comes from the mm columns when they are filled.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise ValueError(f"it is larger than {MAX_TABLE_BYTES // 1_000_000} MB")
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or ()
            missing = [c for c in ("image", "landmark", "row", "col") if c not in columns]
            if missing:
                raise ValueError(f"not a landmark table (no column(s) {', '.join(missing)})")
            tables: dict[str, list[dict[str, str]]] = {}
            for row in reader:
                tables.setdefault(row["image"] or "", []).append(row)
        return [_table_annotation(name, rows) for name, rows in tables.items()]
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise ValueError(f"{path.name}: {_brief(exc)}") from exc


def _table_annotation(image: str, rows: list[dict[str, str]]) -> Annotation:
    def numbers(*columns: str) -> np.ndarray:
        try:
            return np.array(
                [[float(row.get(c) or "nan") for c in columns] for row in rows], dtype=float
            )
        except ValueError as exc:
            raise ValueError(f"{image}: {columns} must be numbers ({exc})") from exc

    points = numbers("row", "col")
    points[[row.get("visible", "1").strip() == "0" for row in rows]] = np.nan
    sigma = numbers("sigma_row", "sigma_col")
    mm = numbers("row_mm", "col_mm")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = mm / points
    usable = np.isfinite(ratios).all(axis=1) & (ratios > 0).all(axis=1)
    seen = points[np.isfinite(points).all(axis=1)]
    extent = np.ceil(seen.max(axis=0) + 1) if len(seen) else np.ones(2)
    return Annotation(
        image_name=image,
        image_shape=tuple(int(max(1, n)) for n in extent),
        landmark_names=tuple(row["landmark"] for row in rows),
        points=points,
        source=[row.get("source") or "human" for row in rows],
        sigma=None if np.isnan(sigma).all() else sigma,
        spacing=tuple(np.median(ratios[usable], axis=0)) if usable.any() else None,
        model=next((row["model"] for row in rows if row.get("model")), None),
    )


def session_from_annotation(ann: Annotation) -> LandmarkSession:
    """The editable landmarks of a sidecar (all of them, hidden ones included)."""
    return LandmarkSession.from_saved(
        ann.landmark_names, ann.points, ann.source, ann.sigma, ann.model, ann.image_shape
    )


def annotation_from_session(
    session: LandmarkSession,
    image_name: str,
    image_shape: tuple[int, int],
    spacing: tuple[float, float] | None = None,
    spacing_source: str | None = None,
) -> Annotation:
    """What a session saves: its points (hidden ones NaN), sources, sigma and model, and the
    film's spacing with where it came from."""
    return Annotation(
        image_name=image_name,
        image_shape=image_shape,
        landmark_names=session.names,
        points=session.points(),
        source=list(session.source),
        sigma=session.sigma,
        spacing=tuple(spacing) if spacing else None,
        model=session.model_id,
        spacing_source=spacing_source,
    )
