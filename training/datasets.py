"""Landmark datasets: AASCE 2019 spine, ISBI 2015 cephalometric, digital hand atlas, sidecars.

Every reader returns lazy :class:`SampleSource` objects (file path + labels); ``load`` reads the
image and gives a :class:`Sample` with a 2-D float32 grey image and (row, col) landmarks in that
image's pixels. Files that store (x, y) are converted here. Stored pixel coordinates are taken
as they are (pixel centres at integers), as the published evaluation code does.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from napari_nfdp.core.preprocess import (
    apply_affine,
    block_matrix,
    reduce_to_long_side,
    to_grey_float32,
)
from napari_nfdp.io.annotations import SIDECAR_SUFFIX, find_sidecar, read_annotation
from napari_nfdp.io.images import IMAGE_SUFFIXES, list_images, read_image, write_image

ISBI_LANDMARKS = 19
ISBI_SPACING = (0.1, 0.1)
ISBI_ANNOTATORS = ("400_senior", "400_junior")
ISBI_SPLITS: dict[str, tuple[str, ...]] = {
    "training": ("TrainingData",),
    "test1": ("Test1Data",),
    "test2": ("Test2Data",),
    "test": ("Test1Data", "Test2Data"),
}
HAND_WRIST = (0, 4)  # landmarks 1 and 5: the wrist width
HAND_WRIST_MM = 50.0
# Folder names accepted for a split (the AASCE release uses "training" / "test").
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "training": ("training", "train"),
    "validation": ("validation", "val"),
    "test": ("test", "testing"),
}
_WHOLE = ("training", "all")  # splits that mean "everything" for formats without splits


@dataclass
class Sample:
    """One image in memory: grey float32 image, (K, 2) (row, col) landmarks (NaN = missing)."""

    image: np.ndarray
    landmarks: np.ndarray
    spacing: tuple[float, float] | None
    name: str


@dataclass(frozen=True, eq=False)
class SampleSource:
    """An image file and its labels; nothing is read until :meth:`load`.

    ``landmarks`` are (row, col) pixels of the full-size image; ``spacing`` (mm per pixel) falls
    back to the image file's own (DICOM) when None; ``image_shape``, when given, is checked.
    """

    path: Path
    landmarks: np.ndarray
    name: str
    spacing: tuple[float, float] | None = None
    image_shape: tuple[int, int] | None = None

    def load(self, max_side: int | None = None) -> Sample:
        """Read the image; block-mean reduce it so its long side is at most ``max_side``."""
        image, metadata = read_image(self.path)
        if self.image_shape is not None and tuple(image.shape[:2]) != tuple(self.image_shape):
            raise ValueError(
                f"{self.path.name}: image is {image.shape[:2]} px but its labels are for "
                f"{tuple(self.image_shape)}"
            )
        spacing = self.spacing if self.spacing is not None else metadata.get("spacing")
        return sample_from_array(image, self.landmarks, self.name, max_side, spacing)


def sample_from_array(
    image: np.ndarray,
    landmarks: np.ndarray,
    name: str,
    max_side: int | None = None,
    spacing: tuple[float, float] | None = None,
) -> Sample:
    """A :class:`Sample` from an in-memory image, reduced by an integer block-mean factor so the
    long side is at most ``max_side``; landmarks and spacing follow the reduction."""
    grey = to_grey_float32(image)
    landmarks = np.array(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[1] != 2:
        raise ValueError(f"{name}: landmarks must have shape (K, 2), got {landmarks.shape}")
    grey, factor = reduce_to_long_side(grey, max_side)
    if factor > 1:
        landmarks = apply_affine(np.linalg.inv(block_matrix(factor)), landmarks)
        if spacing is not None:
            spacing = (spacing[0] * factor, spacing[1] * factor)
    spacing = None if spacing is None else (float(spacing[0]), float(spacing[1]))
    return Sample(image=grey, landmarks=landmarks, spacing=spacing, name=name)


def _split_names(split: str) -> tuple[str, ...]:
    """Folder names that may hold ``split`` (e.g. "train" finds "training" too)."""
    return next((names for names in SPLIT_ALIASES.values() if split in names), (split,))


def _split_folder(parent: Path, split: str) -> Path:
    for name in _split_names(split):
        if (parent / name).is_dir():
            return parent / name
    raise FileNotFoundError(f"no {split!r} split in {parent}")


def _xy_to_rc(xy: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(xy, dtype=np.float64)[:, ::-1])


def _require_all(missing: list[str], what: str, where: Path) -> None:
    if missing:
        raise ValueError(f"{len(missing)} image(s) in {where} have no {what}, e.g. {missing[0]!r}")


# --- AASCE 2019 -----------------------------------------------------------------------------


def read_aasce(root: str | Path, split: str = "training") -> list[SampleSource]:
    """AASCE 2019 spine: ``root/data/<split>/*.jpg`` with ``root/labels/<split>/<name>.mat``
    (key ``p2``, (K, 2) (x, y) pixels), else ``landmarks.csv`` + ``filenames.csv`` (one row per
    image: x1..xK then y1..yK, divided by the image width / height)."""
    root = Path(root)
    image_dir = _split_folder(root / "data", split)
    label_dir = root / "labels" / image_dir.name
    has_csv = all((label_dir / n).is_file() for n in ("landmarks.csv", "filenames.csv"))
    table = _read_aasce_csv(label_dir) if has_csv else {}
    sources, missing = [], []
    for path in list_images(image_dir):
        mat = label_dir / f"{path.name}.mat"
        if mat.is_file():
            landmarks = _read_p2(mat)
        elif path.name in table:
            with Image.open(path) as pil:
                width, height = pil.size
            normalised = table[path.name]
            k = normalised.size // 2
            landmarks = np.stack([normalised[k:] * height, normalised[:k] * width], axis=1)
        else:
            missing.append(path.name)
            continue
        sources.append(SampleSource(path=path, landmarks=landmarks, name=path.name))
    _require_all(missing, "landmarks (.mat or landmarks.csv row)", image_dir)
    return sources


def _read_p2(path: Path) -> np.ndarray:
    try:
        p2 = np.asarray(scipy.io.loadmat(path)["p2"], dtype=np.float64)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise ValueError(f"{path.name}: not an AASCE label file with key 'p2' ({exc})") from exc
    if p2.ndim != 2 or p2.shape[1] != 2 or p2.shape[0] == 0:
        raise ValueError(f"{path.name}: 'p2' must have shape (K, 2), got {p2.shape}")
    return _xy_to_rc(p2)


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]


def _numeric_rows(path: Path, first: int = 0) -> list[tuple[list[str], np.ndarray]]:
    """CSV rows with their cells from ``first`` on as float64; a header line is skipped."""
    result = []
    for line, row in enumerate(_csv_rows(path)):
        try:
            values = np.array([float(c) for c in row[first:] if c.strip()], dtype=np.float64)
        except ValueError as exc:
            if line == 0:  # header
                continue
            raise ValueError(f"{path.name}: line {line + 1} is not numeric ({exc})") from exc
        if values.size == 0 or values.size % 2:
            raise ValueError(f"{path.name}: line {line + 1} has {values.size} coordinates")
        result.append((row, values))
    return result


def _read_aasce_csv(label_dir: Path) -> dict[str, np.ndarray]:
    rows = [values for _, values in _numeric_rows(label_dir / "landmarks.csv")]
    names = [
        row[0].strip()
        for row in _csv_rows(label_dir / "filenames.csv")
        if Path(row[0].strip()).suffix.lower() in IMAGE_SUFFIXES
    ]
    if len(rows) != len(names):
        raise ValueError(
            f"{label_dir}: landmarks.csv has {len(rows)} rows but filenames.csv {len(names)} names"
        )
    return dict(zip(names, rows, strict=True))


def write_aasce(
    root: str | Path,
    split: str,
    items: Iterable[tuple[str, np.ndarray, np.ndarray]],
    ext: str = "jpg",
) -> list[Path]:
    """Write ``(name, 2-D image, (K, 2) row/col landmarks)`` items in the AASCE layout.

    Images go to ``root/data/<split>/<name>.<ext>``: 8-bit JPEG (quality 95, other dtypes scaled
    by their range) or PNG (uint8 / uint16 kept, others scaled to 16 bit). Labels go to
    ``root/labels/<split>/<name>.<ext>.mat`` (``p2``, (x, y)) and, for the items of this call,
    ``landmarks.csv`` + ``filenames.csv``. Returns the image paths.
    """
    ext = ext.lower().lstrip(".")
    if ext not in ("jpg", "jpeg", "png"):
        raise ValueError(f"ext must be 'jpg' or 'png', got {ext!r}")
    root = Path(root)
    image_dir, label_dir = root / "data" / split, root / "labels" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    paths, names, rows = [], [], []
    for name, image, landmarks in items:
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D grey image, got shape {image.shape}")
        landmarks = np.asarray(landmarks, dtype=np.float64)
        file_name = name if name.lower().endswith(f".{ext}") else f"{name}.{ext}"
        path = write_image(image_dir / file_name, _storable(image, ext), quality=95)
        xy = landmarks[:, ::-1]
        scipy.io.savemat(label_dir / f"{file_name}.mat", {"p2": xy})
        height, width = image.shape
        rows.append(np.concatenate([xy[:, 0] / width, xy[:, 1] / height]))
        names.append(file_name)
        paths.append(path)
    with (label_dir / "landmarks.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([[repr(float(v)) for v in row] for row in rows])
    with (label_dir / "filenames.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([[n] for n in names])
    return paths


def _storable(image: np.ndarray, ext: str) -> np.ndarray:
    keep = (np.uint8,) if ext in ("jpg", "jpeg") else (np.uint8, np.uint16)
    if image.dtype in keep:
        return image
    target = np.uint8 if ext in ("jpg", "jpeg") else np.uint16
    values = image.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scale = np.iinfo(target).max / (high - low) if high > low else 0.0
    return np.rint((values - low) * scale).astype(target)


# --- ISBI 2015 cephalometric ----------------------------------------------------------------


def read_isbi2015(root: str | Path, split: str = "training") -> list[SampleSource]:
    """ISBI 2015 cephalometric: ``RawImage/<TrainingData|Test1Data|Test2Data>/NNN.bmp`` with
    ``AnnotationsByMD/400_senior|400_junior/NNN.txt`` (first 19 lines ``x,y``); the ground
    truth is the mean of the annotators; spacing 0.1 mm. Splits: training, test1, test2, test."""
    root = Path(root)
    split = split if split in ISBI_SPLITS else _split_names(split)[0]
    if split not in ISBI_SPLITS:
        raise FileNotFoundError(f"no {split!r} split in ISBI 2015 (use {sorted(ISBI_SPLITS)})")
    sources, missing = [], []
    for folder in ISBI_SPLITS[split]:
        image_dir = root / "RawImage" / folder
        if not image_dir.is_dir():
            raise FileNotFoundError(f"ISBI 2015 folder not found: {image_dir}")
        for path in list_images(image_dir):
            labels = [
                _read_isbi_txt(txt)
                for txt in (
                    root / "AnnotationsByMD" / a / f"{path.stem}.txt" for a in ISBI_ANNOTATORS
                )
                if txt.is_file()
            ]
            if not labels:
                missing.append(path.name)
                continue
            sources.append(
                SampleSource(
                    path=path,
                    landmarks=np.mean(labels, axis=0),
                    name=path.name,
                    spacing=ISBI_SPACING,
                )
            )
    _require_all(missing, "annotation in AnnotationsByMD", root)
    return sources


def _read_isbi_txt(path: Path) -> np.ndarray:
    lines = [
        line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
    ]
    try:
        xy = [[float(v) for v in line.split(",")] for line in lines[:ISBI_LANDMARKS]]
        array = np.array(xy, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path.name}: expected {ISBI_LANDMARKS} lines 'x,y' ({exc})") from exc
    if array.shape != (ISBI_LANDMARKS, 2):
        raise ValueError(f"{path.name}: expected {ISBI_LANDMARKS} lines 'x,y', got {array.shape}")
    return _xy_to_rc(array)


# --- digital hand atlas ---------------------------------------------------------------------


def read_hand(root: str | Path, split: str = "all") -> list[SampleSource]:
    """Digital hand atlas: ``root/all.csv`` rows ``id,x1,y1,...,xK,yK`` (K = 37) and images
    ``root/images/<id>.<ext>`` (or next to the CSV). Spacing is None: see :func:`hand_spacing`.
    ``split`` "all" / "training" is every row; another name reads the ids in ``root/<split>.txt``.
    """
    root = Path(root)
    image_dir = root / "images" if (root / "images").is_dir() else root
    by_stem = {p.stem: p for p in list_images(image_dir)}
    wanted = None if _split_names(split)[0] in _WHOLE else _split_ids(root, split)
    sources, missing = [], []
    for row, values in _numeric_rows(root / "all.csv", first=1):
        image_id = row[0].strip()
        if wanted is not None and image_id not in wanted:
            continue
        if image_id not in by_stem:
            missing.append(image_id)
            continue
        sources.append(
            SampleSource(
                path=by_stem[image_id], landmarks=_xy_to_rc(values.reshape(-1, 2)), name=image_id
            )
        )
    if missing:
        raise ValueError(
            f"{len(missing)} id(s) of all.csv have no image in {image_dir}, e.g. {missing[0]!r}"
        )
    return sources


def _split_ids(root: Path, split: str) -> set[str]:
    path = root / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no {split!r} split in {root} (expected {path.name} with ids)")
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def hand_spacing(landmarks: np.ndarray) -> tuple[float, float]:
    """Pseudo spacing (mm/px) of a hand radiograph: the wrist width (landmarks 1-5) is 50 mm."""
    points = np.asarray(landmarks, dtype=np.float64)
    width = float(np.linalg.norm(points[HAND_WRIST[0]] - points[HAND_WRIST[1]]))
    if not math.isfinite(width) or width <= 0:
        raise ValueError("hand spacing needs landmarks 1 and 5 (the wrist) at distinct positions")
    spacing = HAND_WRIST_MM / width
    return (spacing, spacing)


# --- napari-nfdp sidecars -------------------------------------------------------------------


def read_sidecars(
    folder: str | Path, annotation_folder: str | Path | None = None
) -> list[SampleSource]:
    """Images of ``folder`` that have a ``<name>.nfdp.json`` sidecar (in ``annotation_folder``
    first, else next to the image) with at least one point; missing points stay NaN."""
    folder = Path(folder)
    sources: list[SampleSource] = []
    names: tuple[str, ...] | None = None
    for path in list_images(folder):
        sidecar = find_sidecar(path, annotation_folder)
        if sidecar is None:
            continue
        ann = read_annotation(sidecar)
        if names is not None and ann.landmark_names != names:
            raise ValueError(f"{sidecar.name}: its landmark names differ from the other sidecars")
        names = ann.landmark_names
        if not np.isfinite(ann.points).all(axis=1).any():
            continue
        sources.append(
            SampleSource(
                path=path,
                landmarks=ann.points.copy(),
                name=path.name,
                spacing=ann.spacing,
                image_shape=ann.image_shape,
            )
        )
    return sources


def _read_sidecar_folder(folder: Path) -> list[SampleSource]:
    annotations = folder / "annotations"
    return read_sidecars(folder, annotations if annotations.is_dir() else None)


# --- autodetection --------------------------------------------------------------------------


def open_dataset(path: str | Path, split: str = "training") -> list[SampleSource]:
    """Open a dataset folder of any supported format (detected from its layout).

    A split the dataset does not have raises ``FileNotFoundError``. Formats without splits
    (hand atlas, sidecar folders) give everything for "training" / "all"; a sidecar folder may
    hold one sub-folder per split, and its sidecars may sit in an ``annotations`` sub-folder.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {path}")
    if (path / "data").is_dir() and (path / "labels").is_dir():
        return read_aasce(path, split)
    if (path / "RawImage").is_dir() and (path / "AnnotationsByMD").is_dir():
        return read_isbi2015(path, split)
    if (path / "all.csv").is_file():
        return read_hand(path, split)
    if any(path.glob(f"*{SIDECAR_SUFFIX}")) or any(path.glob(f"*/*{SIDECAR_SUFFIX}")):
        whole = _split_names(split)[0] in _WHOLE
        if whole and not any((path / n).is_dir() for n in _split_names("training")):
            return _read_sidecar_folder(path)
        return _read_sidecar_folder(_split_folder(path, split))
    raise ValueError(
        f"{path}: unknown dataset layout (expected AASCE data/ + labels/, ISBI 2015 RawImage/ + "
        f"AnnotationsByMD/, a hand atlas all.csv, or images with {SIDECAR_SUFFIX} sidecars)"
    )
