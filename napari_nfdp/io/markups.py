"""3D Slicer markups (``.mrk.json``), out and in: landmarks, Cobb lines and angles; no napari.

What :func:`write_markups` writes (Slicer's markups JSON schema v1.0.3, one file per film):

* one point list (``Fiducial``) holding every landmark as a control point labelled with its
  name ("T1-top-left"); a point that is not visible has ``positionStatus`` "undefined"; its
  description says who placed it: "source: human", or "source: model; placed at row R, col C
  px", so that a model point moved in Slicer reads back as a person's;
* for each measured Cobb curve (PT, MT, TL) a ``Line`` along each of its end vertebrae (from
  the left-side to the right-side midpoint: the lines the angle is measured on) and an
  ``Angle`` whose vertex lies midway between those two lines and whose arms run along them,
  so that the angle Slicer computes is the Cobb angle.

Coordinates are LPS millimetres (:class:`FilmFrame`): pixel (row, col) -> IPP + col x
col_spacing x IOP[0:3] + row x row_spacing x IOP[3:6]. Without IPP / IOP the origin is 0 and
the orientation the identity (where Slicer puts a PNG it loads); without a pixel spacing a
pixel is 1 mm. The frame, the image name and size are also stored under the top-level key
``"napari-nfdp"``, so :func:`read_markups` maps the points back exactly; Slicer drops that
key when it saves the file again, and the film's own frame is used then.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_nfdp.core.atomic import atomic_write
from napari_nfdp.core.cobb import CobbResult, Curve
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES, SPINE_VERTEBRAE
from napari_nfdp.core.session import HUMAN, MODEL
from napari_nfdp.io.annotations import FAR_OUTSIDE, Annotation, read_json
from napari_nfdp.io.overlay import CURVE_COLOURS

logger = logging.getLogger(__name__)

MARKUPS_SUFFIX = ".mrk.json"
SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)
FORMAT_KEY = "napari-nfdp"  # our own top-level key: frame, image name and size, model
MOVED_PX = 0.01  # a model point this far from where the model placed it was moved in Slicer
OFF_PLANE_MM = 1.0  # points further than this from the film's plane are worth a note
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_SOURCE = re.compile(r"source:\s*(model|human)", re.IGNORECASE)
_PLACED = re.compile(r"row\s+(-?\d+(?:\.\d*)?)\s*,\s*col\s+(-?\d+(?:\.\d*)?)", re.IGNORECASE)


@dataclass(frozen=True)
class FilmFrame:
    """Where a film's pixels lie in patient space (LPS, mm).

    ``spacing`` (row, col) mm per pixel, None when unknown (1 mm is used); ``position`` is the
    centre of pixel (0, 0) (DICOM ImagePositionPatient); ``orientation`` the direction of
    increasing column, then of increasing row (ImageOrientationPatient).
    """

    spacing: tuple[float, float] | None = None
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, ...] = _IDENTITY

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> FilmFrame:
        """The frame from image metadata (``spacing``, ``image_position``,
        ``image_orientation``); malformed geometry is ignored with a warning."""
        spacing = _spacing(info.get("spacing"))
        position, orientation = info.get("image_position"), info.get("image_orientation")
        if position is None or orientation is None:
            return cls(spacing)
        try:
            return cls(spacing, _vector(position, 3), _orthonormal(orientation))
        except ValueError as error:
            logger.warning("ignoring the image position / orientation: %s", error)
            return cls(spacing)

    def to_info(self) -> dict[str, Any]:
        """The frame as JSON-ready metadata (the keys :meth:`from_info` reads)."""
        return {
            "spacing": None if self.spacing is None else list(self.spacing),
            "image_position": list(self.position),
            "image_orientation": list(self.orientation),
        }

    def _axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS step of one row, of one column, and the unit normal of the film's plane."""
        along_row, along_col = np.reshape(self.orientation, (2, 3))
        row_mm, col_mm = self.spacing or (1.0, 1.0)
        return along_col * row_mm, along_row * col_mm, np.cross(along_row, along_col)

    def to_lps(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) pixel (row, col) -> (N, 3) LPS mm."""
        row_step, col_step, _ = self._axes()
        points = np.asarray(points, dtype=float).reshape(-1, 2)
        return np.asarray(self.position) + points[:, :1] * row_step + points[:, 1:] * col_step

    def to_pixels(self, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) LPS mm -> (N, 2) pixel (row, col) and each point's distance off the plane."""
        row_step, col_step, normal = self._axes()
        offset = np.asarray(lps, dtype=float).reshape(-1, 3) - np.asarray(self.position)
        rows = offset @ row_step / (row_step @ row_step)
        cols = offset @ col_step / (col_step @ col_step)
        return np.stack([rows, cols], axis=1), np.abs(offset @ normal)


def _spacing(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    row, col = _vector(value, 2)
    if not (row > 0 and col > 0):
        raise ValueError(f"pixel spacing must be positive, got {value!r}")
    return (row, col)


def _vector(value: Any, count: int) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected {count} numbers, got {value!r}") from None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"expected {count} finite numbers, got {value!r}")
    return numbers


def _orthonormal(orientation: Any) -> tuple[float, ...]:
    """Two direction cosines, checked to be (nearly) unit and orthogonal, made exactly so."""
    along_row, along_col = np.reshape(_vector(orientation, 6), (2, 3))
    norms = np.linalg.norm(along_row), np.linalg.norm(along_col)
    if abs(norms[0] - 1) > 0.01 or abs(norms[1] - 1) > 0.01 or abs(along_row @ along_col) > 0.01:
        raise ValueError(f"the orientation {orientation!r} is not two orthogonal unit vectors")
    along_row = along_row / norms[0]
    along_col = along_col - (along_col @ along_row) * along_row
    along_col = along_col / np.linalg.norm(along_col)
    return tuple(float(v) for v in (*along_row, *along_col))


def film_frame(image_path: str | Path | None, spacing: Sequence[float] | None = None) -> FilmFrame:
    """The frame of a film: a DICOM's IPP / IOP (read from its header, without the pixel data)
    and its spacing (``spacing`` when given); other images only ``spacing``."""
    from napari_nfdp.io.images import is_dicom, is_regular_file

    if image_path is None or not is_regular_file(image_path) or not is_dicom(image_path):
        return FilmFrame(_spacing(spacing))
    import pydicom

    from napari_nfdp.io.dicom import dicom_geometry, dicom_spacing

    try:
        header = pydicom.dcmread(image_path, stop_before_pixels=True)
        info = {"spacing": spacing or dicom_spacing(header), **dicom_geometry(header)}
    except Exception as error:  # noqa: BLE001 - an unreadable header only means no geometry
        logger.warning("no image position / orientation from %s: %s", image_path, error)
        return FilmFrame(_spacing(spacing))
    return FilmFrame.from_info(info)


def markups_path(image_path: str | Path) -> Path:
    """Where a film's markups go: ``<film stem>.mrk.json`` beside it."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + MARKUPS_SUFFIX)


def find_markups(image_path: str | Path) -> Path | None:
    """The markups file beside a film (``<name>.mrk.json``, else ``<stem>.mrk.json``), if any."""
    image_path = Path(image_path)
    candidates = (image_path.with_name(image_path.name + MARKUPS_SUFFIX), markups_path(image_path))
    return next((c for c in candidates if c.is_file()), None)


@dataclass
class MarkupsLandmarks:
    """Landmarks as a markups file holds them: (row, col) pixels of the film, NaN rows missing
    or not visible, who placed each, the film's frame, and what the file says about the film."""

    names: tuple[str, ...]
    points: np.ndarray
    source: list[str]
    frame: FilmFrame = field(default_factory=FilmFrame)
    image_name: str | None = None
    image_shape: tuple[int, int] | None = None
    model: str | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_annotation(cls, ann: Annotation, frame: FilmFrame | None = None) -> MarkupsLandmarks:
        """The landmarks of a sidecar annotation (frame: its spacing only, unless given)."""
        return cls(
            ann.landmark_names,
            ann.points,
            list(ann.source),
            frame or FilmFrame(ann.spacing),
            ann.image_name,
            ann.image_shape,
            ann.model,
        )

    def annotation(self, image_name: str, image_shape: tuple[int, int]) -> Annotation:
        """The landmarks as an annotation of a film of ``image_shape`` (ValueError when the file
        was written for another size, or points lie far outside the film)."""
        shape = tuple(int(n) for n in image_shape)
        if self.image_shape is not None and tuple(self.image_shape) != shape:
            raise ValueError(
                f"it was written for an image of {self.image_shape[0]} x {self.image_shape[1]} "
                f"pixels, not {shape[0]} x {shape[1]}"
            )
        size = np.asarray(shape, dtype=float)
        far = (np.abs(self.points - size / 2) > FAR_OUTSIDE * size).any(axis=1)
        if far.any():
            name = self.names[int(np.flatnonzero(far)[0])]
            raise ValueError(
                f"point {name} lies far outside the {shape[0]} x {shape[1]} image (was it "
                "placed on another image, or in another frame?)"
            )
        return Annotation(
            image_name=image_name,
            image_shape=shape,
            landmark_names=self.names,
            points=self.points,
            source=self.source,
            spacing=self.frame.spacing,
            model=self.model,
        )


# -- writing ---------------------------------------------------------------------------------


def markups_document(
    landmarks: MarkupsLandmarks, cobb: CobbResult | None | Literal["auto"] = "auto"
) -> dict[str, Any]:
    """The markups JSON of ``landmarks``: the point list, then the Lines and Angle of each
    measured curve of ``cobb`` ("auto": measured here when the image size is known)."""
    if cobb == "auto":
        cobb = _measure(landmarks)
    markups = [_point_list(landmarks)]
    if cobb is not None:
        for curve in cobb.curves:
            if curve.measured:
                markups += _curve_markups(curve, landmarks.frame)
    stored = {
        "image_name": landmarks.image_name,
        "image_shape": None if landmarks.image_shape is None else list(landmarks.image_shape),
        "model": landmarks.model,
        **landmarks.frame.to_info(),
    }
    return {"@schema": SCHEMA, FORMAT_KEY: stored, "markups": markups}


def write_markups(
    path: str | Path,
    landmarks: MarkupsLandmarks | Annotation,
    cobb: CobbResult | None | Literal["auto"] = "auto",
    frame: FilmFrame | None = None,
) -> Path:
    """Write a ``.mrk.json`` atomically (see the module docstring); return its path.

    An :class:`Annotation` is taken with ``frame`` (default: its spacing only).
    """
    if isinstance(landmarks, Annotation):
        landmarks = MarkupsLandmarks.from_annotation(landmarks, frame)
    document = markups_document(landmarks, cobb)
    return atomic_write(
        path, lambda fh: json.dump(document, fh, indent=1, allow_nan=False), text=True
    )


def _measure(landmarks: MarkupsLandmarks) -> CobbResult | None:
    if landmarks.image_shape is None:
        logger.info("no Cobb angles in the markups: the image height is not known")
        return None
    from napari_nfdp.core.detection import measure_cobb  # the one rule; pulls in torch

    result, note = measure_cobb(
        landmarks.points, landmarks.names, landmarks.image_shape[0], landmarks.frame.spacing
    )
    if result is None:
        logger.info("no Cobb angles in the markups: %s", note)
    return result


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) + 0.0 for v in values]  # + 0.0: no "-0.0" in the file


def _point_list(landmarks: MarkupsLandmarks) -> dict[str, Any]:
    lps = landmarks.frame.to_lps(np.nan_to_num(landmarks.points))
    points = []
    for i, (name, point, source) in enumerate(
        zip(landmarks.names, landmarks.points, landmarks.source, strict=True)
    ):
        defined = bool(np.isfinite(point).all())
        description = f"source: {source}"
        if source == MODEL and defined:
            description += f"; placed at row {point[0]:.3f}, col {point[1]:.3f} px"
        entry: dict[str, Any] = {"id": str(i + 1), "label": name, "description": description}
        if defined:
            entry["position"] = _rounded(lps[i])
        entry.update(locked=False, visibility=True, selected=True)
        entry["positionStatus"] = "defined" if defined else "undefined"
        points.append(entry)
    film = Path(landmarks.image_name).stem if landmarks.image_name else "film"
    return {
        "type": "Fiducial",
        "name": f"{film} landmarks",
        "coordinateSystem": "LPS",
        "coordinateUnits": "mm",
        "locked": False,
        "fixedNumberOfControlPoints": True,  # 68 landmarks: unset a point, never delete it
        "labelFormat": "%N-%d",
        "controlPoints": points,
    }


def _display(curve: str) -> dict[str, Any]:
    colour = [round(c / 255, 4) for c in CURVE_COLOURS.get(curve, (255, 255, 255))]
    return {"color": colour, "selectedColor": colour, "propertiesLabelVisibility": True}


def _markup(kind: str, name: str, labels: Sequence[str], lps: np.ndarray) -> dict[str, Any]:
    points = [
        {"id": str(i + 1), "label": label, "position": _rounded(p), "positionStatus": "defined"}
        for i, (label, p) in enumerate(zip(labels, lps, strict=True))
    ]
    return {
        "type": kind,
        "name": name,
        "coordinateSystem": "LPS",
        "coordinateUnits": "mm",
        "locked": True,  # derived from the landmarks: move those instead
        "controlPoints": points,
    }


def _curve_markups(curve: Curve, frame: FilmFrame) -> list[dict[str, Any]]:
    """The two end-vertebra Lines of a curve and its Angle (vertex between the lines)."""
    ends = [SPINE_VERTEBRAE[curve.upper], SPINE_VERTEBRAE[curve.lower]]
    lines = [frame.to_lps(pair) for pair in np.asarray(curve.lines, dtype=float)]
    markups = []
    for vertebra, line in zip(ends, lines, strict=True):
        markup = _markup(
            "Line", f"{curve.name} {vertebra}", [f"{vertebra} left", f"{vertebra} right"], line
        )
        length = float(np.linalg.norm(line[1] - line[0]))
        markup["measurements"] = [_measurement("length", length, "mm")]
        markup["display"] = _display(curve.name)
        markups.append(markup)
    upper, lower = (line[1] - line[0] for line in lines)
    if upper @ lower < 0:  # the arms open by the acute angle between the two lines
        lower = -lower
    vertex = (lines[0].mean(axis=0) + lines[1].mean(axis=0)) / 2
    arms = [vertex + upper / 2, vertex, vertex + lower / 2]
    angle = _markup(
        "Angle", f"{curve.name} {curve.span}", [ends[0], "vertex", ends[1]], np.array(arms)
    )
    angle["measurements"] = [_measurement("angle", curve.angle, "deg")]
    angle["display"] = _display(curve.name)
    markups.append(angle)
    return markups


def _measurement(name: str, value: float, units: str) -> dict[str, Any]:
    return {"name": name, "enabled": True, "value": round(value, 6), "units": units}


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ControlPoint:
    label: str
    lps: np.ndarray | None  # None: position undefined
    description: str


def read_markups(
    path: str | Path,
    names: Sequence[str] | None = None,
    frame: FilmFrame | None = None,
) -> MarkupsLandmarks:
    """Read the point list of a ``.mrk.json`` back into landmarks (pixels of the film).

    Points are matched to ``names`` by label (default: the spine's names when any label is
    one, else the file's labels in order); landmarks without a point, and undefined points,
    are missing (NaN). The frame the file was written in (our ``"napari-nfdp"`` key) is used
    when stored, else ``frame`` (the film's), else the identity at 1 mm per pixel. A point
    the file says the model placed is "model" while it is still there, otherwise "human".
    Anything wrong with the file raises ValueError naming it (FileNotFoundError if missing).
    """
    path = Path(path)
    data = read_json(path, "markups file")
    try:
        return _landmarks(data, names, frame)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise ValueError(f"{path.name}: {exc}") from exc


def _landmarks(data: Any, names: Sequence[str] | None, frame: FilmFrame | None) -> MarkupsLandmarks:
    if not isinstance(data, dict) or not isinstance(data.get("markups"), list):
        raise ValueError("not a 3D Slicer markups file (no list of markups)")
    stored = data.get(FORMAT_KEY) if isinstance(data.get(FORMAT_KEY), dict) else {}
    if stored:
        frame = FilmFrame.from_info(stored)
    frame = frame or FilmFrame()
    lists = [
        _control_points(m)
        for m in data["markups"]
        if isinstance(m, dict) and m.get("type") == "Fiducial"
    ]
    if not lists:
        raise ValueError("it holds no point list")
    if names is None:
        labels = {p.label.strip() for points in lists for p in points}
        if labels & set(SPINE_LANDMARK_NAMES):
            names = SPINE_LANDMARK_NAMES
        else:
            names = tuple(dict.fromkeys(p.label.strip() for p in lists[0]))
    names = tuple(names)
    lookup = _Lookup(names)
    points = max(lists, key=lambda found: sum(lookup.index(p.label) is not None for p in found))
    result = MarkupsLandmarks(
        names,
        np.full((len(names), 2), np.nan),
        [MODEL] * len(names),  # a landmark the file lacks: nobody decided, Detect may fill it
        frame,
        None if stored.get("image_name") is None else str(stored["image_name"]),
        None if stored.get("image_shape") is None else _shape(stored["image_shape"]),
        None if stored.get("model") is None else str(stored["model"]),
    )
    _fill(result, points, lookup)
    return result


class _Lookup:
    """Landmark index by label: exact (spaces trimmed) first, then ignoring case."""

    def __init__(self, names: Sequence[str]) -> None:
        self.exact = {n.strip(): i for i, n in reversed(list(enumerate(names)))}
        self.folded = {n.strip().casefold(): i for i, n in reversed(list(enumerate(names)))}

    def index(self, label: str) -> int | None:
        found = self.exact.get(label.strip())
        return found if found is not None else self.folded.get(label.strip().casefold())


def _fill(result: MarkupsLandmarks, points: list[_ControlPoint], lookup: _Lookup) -> None:
    """Put the matched control points into ``result`` (pixels, source) and note the rest."""
    unmatched, repeated, off_plane = [], [], 0.0
    seen: set[int] = set()
    for point in points:
        i = lookup.index(point.label)
        if i is None:
            unmatched.append(point.label or "(no label)")
            continue
        if i in seen:
            repeated.append(point.label)
            continue
        seen.add(i)
        said = _SOURCE.search(point.description)
        by_model = said is not None and said.group(1).lower() == MODEL
        placed = _PLACED.search(point.description)  # where the model placed a visible point
        if point.lps is None:  # the model's hidden point, or one a person unset (or left out)
            result.source[i] = MODEL if by_model and placed is None else HUMAN
            continue
        pixel, distance = result.frame.to_pixels(point.lps)
        result.points[i] = pixel[0]
        off_plane = max(off_plane, float(distance[0]))
        still = placed is not None and np.allclose(
            pixel[0], [float(placed.group(1)), float(placed.group(2))], atol=MOVED_PX
        )
        result.source[i] = MODEL if by_model and still else HUMAN
    if not seen:
        raise ValueError(
            f"none of its {len(points)} points is named like a landmark (e.g. "
            f"{result.names[0] if result.names else 'T1-top-left'}); start from a file "
            "napari-nfdp wrote"
        )
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        result.notes.append(f"{len(unmatched)} point(s) with other names were left out: {shown}")
    if repeated:
        result.notes.append(f"repeated labels, the first point kept: {', '.join(repeated[:5])}")
    if off_plane > OFF_PLANE_MM:
        result.notes.append(f"points lie up to {off_plane:.1f} mm off the film's plane")
    for note in result.notes:
        logger.info("markups: %s", note)


def _shape(value: Any) -> tuple[int, int]:
    height, width = _vector(value, 2)
    if not (height >= 1 and width >= 1 and height == int(height) and width == int(width)):
        raise ValueError(f"image_shape must be two whole numbers >= 1, got {value!r}")
    return int(height), int(width)


def _control_points(markup: dict[str, Any]) -> list[_ControlPoint]:
    """The control points of a markup, positions in LPS mm (undefined ones None)."""
    system = str(markup.get("coordinateSystem", "LPS")).upper()
    if system not in ("LPS", "RAS"):
        raise ValueError(f"unknown coordinate system {system!r} (expected LPS or RAS)")
    units = markup.get("coordinateUnits", "mm")
    units = str(units[0] if isinstance(units, list) and units else units)
    if units not in ("mm", "um"):
        raise ValueError(f"unknown coordinate units {units!r} (expected mm or um)")
    scale = np.array([-1.0, -1.0, 1.0] if system == "RAS" else [1.0, 1.0, 1.0])
    if units == "um":
        scale = scale / 1000
    found = markup.get("controlPoints", [])
    if not isinstance(found, list):
        raise ValueError("controlPoints must be a list")
    points = []
    for entry in found:
        if not isinstance(entry, dict):
            raise ValueError("a control point is not an object")
        label = str(entry.get("label", ""))
        lps = None
        if entry.get("positionStatus", "defined") == "defined":
            try:
                lps = np.array(_vector(entry.get("position"), 3)) * scale
            except ValueError as error:
                raise ValueError(f"point {label!r}: {error}") from None
        points.append(_ControlPoint(label, lps, str(entry.get("description", ""))))
    return points


def read_film_markups(
    path: str | Path,
    image_path: str | Path,
    *,
    names: Sequence[str] | None = None,
    image_shape: tuple[int, int] | None = None,
    spacing: Sequence[float] | None = None,
) -> tuple[Annotation, MarkupsLandmarks]:
    """The landmarks a markups file holds for a film, as an annotation of that film.

    The film's frame comes from its file (:func:`film_frame`, ``spacing`` when known); its
    size is ``image_shape``, else the size the file stores, else read from the image.
    """
    landmarks = read_markups(path, names, film_frame(image_path, spacing))
    shape = image_shape or landmarks.image_shape
    if shape is None:
        from napari_nfdp.io.images import read_image

        shape = read_image(image_path)[0].shape[:2]
    return landmarks.annotation(Path(image_path).name, shape), landmarks
