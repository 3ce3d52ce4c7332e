"""Projected AP spine films: a random 3-D patient seen by a cone beam, with exact landmarks.

``simulate_projected(seed)`` builds a patient from analytic solids (``patient3d``), places it
in front of the detector (``spine_distance``, a slight whole-body turn and lean), puts the point
source at ``source_distance`` over the centre of a random field (full spine, chest,
thoracolumbar or lumbar), integrates the attenuation along every ray at a working resolution
(``conebeam``) and turns it into a film (``detector``). The 68 landmarks are the cone-beam
projections of the T1..L5 endplate rim points, in AASCE order; those off the film keep their
(outside) coordinates and are marked in ``visible``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from napari_nfdp.simulator.conebeam import ConeBeam, loft_integrals, solid_integrals
from napari_nfdp.simulator.detector import expose
from napari_nfdp.simulator.patient3d import Patient, build_patient
from napari_nfdp.simulator.spine3d import CURVE_TYPES, T1

logger = logging.getLogger(__name__)

FIELDS: tuple[str, ...] = ("full", "chest", "thoracolumbar", "lumbar")
PROJECTED_CURVES: tuple[str, ...] = CURVE_TYPES
MIN_SHAPE = (128, 64)
_FIELD_P = (0.45, 0.15, 0.2, 0.2)
_CURVE_P = (0.2, 0.35, 0.3, 0.15)


@dataclass(frozen=True)
class SimulatedFilm:
    """A projected film and its truth.

    ``image`` holds the stored pixel values (uint16, or uint8) with ``photometric``
    "MONOCHROME2" (bone bright) or "MONOCHROME1" (inverted). ``landmarks`` (68, 2) float64
    (row, col) are the T1..L5 corners in AASCE order, also where they fall off the film;
    ``visible`` says which lie on it. ``spacing`` is (row, col) mm per pixel at the detector;
    ``magnification`` that of the spine at T8 (so its true size is spacing / magnification).
    ``pedicles`` (17, 2, 2) are the projected posterior ends of the T1..L5 pedicles (image
    left, right; row, col).
    """

    image: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray
    spacing: tuple[float, float]
    field: str
    curve_type: str
    seed: int
    photometric: str
    cobb: float
    magnification: float
    source_distance: float
    pedicles: np.ndarray


def simulate_projected(
    seed: int,
    shape: tuple[int, int] | None = None,
    field: str | None = None,
    *,
    curve: str | None = None,
    cobb: float | None = None,
    rotation: float | None = None,
    source_distance: float | None = None,
    spine_distance: float | None = None,
    photometric: str | None = None,
    factor: int | None = None,
) -> SimulatedFilm:
    """Render one random projected AP film; the same arguments always give the same film.

    ``shape`` defaults to a typical size for the field; ``field`` is one of ``FIELDS``;
    ``curve`` one of "straight", "C", "S", "double" with a coronal Cobb angle ``cobb``
    (degrees); ``rotation`` the apical axial rotation per degree of Cobb; ``source_distance``
    (mm, source to detector) and ``spine_distance`` (mm, spine to detector) set the
    magnification; ``factor`` the working-resolution reduction (default: about 0.6 mm
    working pixels). Unset options are drawn from the seed.
    """
    rng = np.random.default_rng(seed)
    # every draw happens whatever is given, so that fixing one option leaves the rest alone
    field = _choice(rng, field, FIELDS, _FIELD_P, "field")
    curve = _choice(rng, curve, CURVE_TYPES, _CURVE_P, "curve")
    drawn_cobb = rng.uniform(0.0, 6.0) if curve == "straight" else 10.0 + 65.0 * rng.beta(1.6, 3)
    cobb = drawn_cobb if cobb is None else float(cobb)
    if not 0.0 <= cobb <= 100.0:
        raise ValueError(f"cobb must be within [0, 100] degrees, got {cobb}")
    drawn_shape = _film_shape(rng, field)
    shape = drawn_shape if shape is None else (int(shape[0]), int(shape[1]))
    if shape[0] < MIN_SHAPE[0] or shape[1] < MIN_SHAPE[1]:
        raise ValueError(f"shape must be at least {MIN_SHAPE}, got {shape}")
    drawn_mono = "MONOCHROME1" if rng.random() < 0.1 else "MONOCHROME2"
    photometric = photometric or drawn_mono
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    drawn_sid, drawn_depth = rng.uniform(1000.0, 1800.0), rng.uniform(100.0, 300.0)
    sid = drawn_sid if source_distance is None else float(source_distance)
    depth = drawn_depth if spine_distance is None else float(spine_distance)
    if not 0.0 < depth < sid - 200.0:
        raise ValueError("the spine must lie between the detector and the source")

    patient = build_patient(rng, curve, float(cobb), rotation, head=field == "full")
    rot, shift = _pose(rng, patient, depth)
    beam = _frame(rng, patient, field, shape, sid, rot, shift)
    if factor is None:  # working pixels of about 0.6 mm, at most about 1400 working rows
        factor = max(int(round(0.6 / beam.pitch)), -(-shape[0] // 1400), 1)
        factor = min(factor, max(1, shape[0] // 128))
    work = beam.coarse(factor)
    solids = patient.solids.packed(rot, shift)
    lofts = [loft.moved(rot, shift) for loft in patient.lofts]
    logger.debug("seed %d: %d solids, working grid %s", seed, len(solids), work.shape)
    bone = solid_integrals(solids, work)
    soft = loft_integrals(lofts, work)

    world = patient.spine.landmarks() @ rot.T + shift
    landmarks = beam.project(world)
    visible = (
        (landmarks[:, 0] >= 0)
        & (landmarks[:, 0] <= shape[0] - 1)
        & (landmarks[:, 1] >= 0)
        & (landmarks[:, 1] <= shape[1] - 1)
    )
    dtype = np.uint8 if rng.random() < 0.15 else np.uint16
    image = expose(
        rng, bone, soft, factor, shape, beam.pitch, _keep_box(landmarks, shape), photometric, dtype
    )
    pedicles = beam.project(patient.spine.pedicle_centres()[T1:] @ rot.T + shift)
    t8 = patient.spine.vertebrae[T1 + 7].centre @ rot.T + shift
    return SimulatedFilm(
        image=image,
        landmarks=landmarks,
        visible=visible,
        spacing=(beam.pitch, beam.pitch),
        field=field,
        curve_type=curve,
        seed=int(seed),
        photometric=photometric,
        cobb=float(cobb),
        magnification=float(beam.magnification(t8[2])),
        source_distance=float(sid),
        pedicles=pedicles,
    )


def _choice(rng, value, options, p, name: str) -> str:
    drawn = str(rng.choice(options, p=p))
    if value is None:
        return drawn
    if value not in options:
        raise ValueError(f"{name} must be one of {options} or None, got {value!r}")
    return value


def _film_shape(rng, field: str) -> tuple[int, int]:
    """A typical film size (pixels) for the field."""
    rows = int(rng.integers(2000, 2801))
    aspect = {
        "full": (0.36, 0.46),
        "chest": (0.8, 1.2),
        "thoracolumbar": (0.42, 0.6),
        "lumbar": (0.5, 0.8),
    }[field]
    return rows, int(rows * rng.uniform(*aspect))


def _rotation(yaw: float, roll: float, pitch: float) -> np.ndarray:
    cy, sy, cr, sr, cp, sp = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
    )
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_z = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return about_z @ about_y @ about_x


def _pose(rng, patient: Patient, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """A slight turn, lean and tilt of the whole patient; T8 at ``depth`` over the detector."""
    rot = _rotation(*np.radians([rng.normal(0, 3.0), rng.normal(0, 1.5), rng.normal(0, 2.0)]))
    t8 = patient.spine.vertebrae[T1 + 7].centre
    return rot, np.array([0.0, 0.0, depth]) - rot @ t8


def _anchors(rng, patient: Patient, field: str) -> tuple[float, float, float]:
    """Patient-frame Y of the film's top and bottom, and the half-width it must show."""
    verts = patient.spine.vertebrae
    y = np.array([v.centre[1] for v in verts])
    hip = float(patient.pelvis.hips[:, 1].mean())
    s1 = float(patient.spine.sacrum[0][1])
    chest = patient.chest.width + 25.0
    between = lambda a, b: rng.uniform(min(a, b), max(a, b))  # noqa: E731
    if field == "full":
        return between(y[0] - 50.0, y[T1 - 1]), between(s1 + 30.0, hip + 60.0), chest * 0.6
    if field == "chest":
        return between(y[3], y[T1 - 1]), between(y[T1 + 11] + 12, y[T1 + 13] + 12), chest
    if field == "thoracolumbar":
        return between(y[T1 + 1], y[T1 + 5]), between(s1, hip + 40.0), chest * 0.6
    return between(y[T1 + 9], y[T1 + 11]), between(s1 + 40.0, hip + 50.0), chest * 0.7


def _frame(rng, patient: Patient, field: str, shape, sid: float, rot, shift) -> ConeBeam:
    """The detector grid: the field's extent on the detector, the source over its centre."""
    top, bottom, half = _anchors(rng, patient, field)
    if rng.random() < 0.25:  # a looser framing: the spine takes less of the film
        extra = (bottom - top) * rng.uniform(0.05, 0.4)
        below = 0.0 if field == "chest" else rng.uniform(0.2, 0.8)  # a chest film ends at L2
        top, bottom = top - extra * (1.0 - below), bottom + extra * below
    spine_x = np.mean([v.centre[0] for v in patient.spine.vertebrae[T1:]])
    z_spine = np.mean([v.centre[2] for v in patient.spine.vertebrae[T1:]])
    points = (
        np.array(
            [
                [spine_x, top, z_spine],
                [spine_x, bottom, z_spine],
                [spine_x - half, 0.5 * (top + bottom), z_spine + 40.0],
                [spine_x + half, 0.5 * (top + bottom), z_spine + 40.0],
            ]
        )
        @ rot.T
        + shift
    )
    source = np.array([points[0, 0], 0.5 * (points[0, 1] + points[1, 1]), sid])
    offset = rng.normal(0.0, 15.0, 2)
    for _ in range(3):  # the source sits over the film's centre
        probe = ConeBeam(source, np.zeros(2), 1.0, (1, 1))
        det = probe.project(points)  # detector (y, x) in mm
        centre = np.array([0.5 * (det[0, 1] + det[1, 1]), 0.5 * (det[0, 0] + det[1, 0])])
        source = np.array([centre[0] + offset[0], centre[1] + offset[1], sid])
    height = det[1, 0] - det[0, 0]
    width_needed = (det[3, 1] - det[2, 1]) * rng.uniform(1.0, 1.15)
    pitch = max(height / shape[0], width_needed / shape[1])
    centre[0] += rng.normal(0.0, 0.04) * pitch * shape[1]
    if field == "chest":  # a wide chest film grows upwards: it still ends at L1-L2
        centre[1] = det[1, 0] - pitch * shape[0] / 2.0
    origin = centre - pitch * (np.array([shape[1], shape[0]]) - 1) / 2.0
    return ConeBeam(source, origin, float(pitch), shape)


def _keep_box(landmarks: np.ndarray, shape) -> tuple[int, int, int, int]:
    """The film box around the visible landmarks (plus a margin) that collimation spares."""
    rows, cols = shape
    lo = np.floor(landmarks.min(axis=0)).astype(int) - 20
    hi = np.ceil(landmarks.max(axis=0)).astype(int) + 20
    return (
        int(np.clip(lo[0], 0, rows)),
        int(np.clip(hi[0], 0, rows)),
        int(np.clip(lo[1], 0, cols)),
        int(np.clip(hi[1], 0, cols)),
    )
