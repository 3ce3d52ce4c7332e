"""Background work for the dock widget: reading images, detection and fine-tuning.

Everything here runs off the GUI thread and never touches layers or widgets: the functions
return plain outcome objects (errors included, as clear text) that the widget applies when the
worker's ``returned`` signal arrives. Heavy imports (torch, training) happen in the worker.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import FunctionWorker, create_worker
from qtpy.QtCore import QObject, Signal

from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.annotations import Annotation, find_sidecar, read_annotation

if TYPE_CHECKING:
    from napari_nfdp.core.localizer import Localizer, Prediction
    from napari_nfdp.core.registry import ModelRegistry, ModelVersion

LayerData = tuple[np.ndarray, dict[str, Any], str]

# Plausibility of a detection: above these the film probably shows no spine.
NO_SPINE_SIGMA_FACTOR = 4.0  # median sigma vs the model's typical sigma on its validation films
OUTSIDE_FRACTION = 0.25  # share of landmarks falling outside the image
MIN_SPINE_FRACTION = 0.2  # T1 top to L5 bottom, as a fraction of the image height


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return text if text else type(error).__name__


# -- opening images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenOutcome:
    """An image read off the GUI thread: napari layer data, or the reason it could not be."""

    path: Path
    layer_data: LayerData | None = None
    error: str | None = None


def read_image_layer(
    path: str | Path, files: Sequence[str] | None = None, index: int = 0
) -> OpenOutcome:
    """Read an image file (or a folder's first image) as layer data; never raises."""
    from napari_nfdp._reader import get_reader, read_layer

    path = Path(path)
    try:
        if files:
            return OpenOutcome(path, read_layer(path, files=[Path(f) for f in files], index=index))
        reader = get_reader(str(path))
        if reader is None:
            if not path.exists():
                return OpenOutcome(path, error=f"{path.name}: no such file or folder")
            return OpenOutcome(
                path,
                error=f"{path.name}: not a radiograph napari-nfdp can open "
                "(DICOM, PNG, JPEG, TIFF or BMP, or a folder of them)",
            )
        return OpenOutcome(path, reader(str(path))[0])
    except (OSError, ValueError, MemoryError) as error:
        text = _describe(error).removeprefix(f"{path.name}: ")
        return OpenOutcome(path, error=f"Cannot open {path.name}: {text}")


# -- detection -------------------------------------------------------------------------------


class LocalizerCache:
    """Keeps the last loaded model so repeated detections skip loading (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, str | None, float] | None = None
        self._localizer: Localizer | None = None

    def get(self, path: Path, device: str | None) -> Localizer:
        """The localizer for a checkpoint file and device, loading it when it changed."""
        from napari_nfdp.core.localizer import Localizer

        key = (str(path), device, path.stat().st_mtime if path.exists() else 0.0)
        with self._lock:
            if key != self._key or self._localizer is None:
                self._localizer = None
                self._localizer = Localizer.load(path, device=device)
                self._key = key
            return self._localizer


@dataclass(frozen=True)
class DetectOutcome:
    """What a detection produced: a prediction (maybe with a plausibility warning) or an error."""

    prediction: Prediction | None = None
    error: str | None = None
    warning: str | None = None
    model_id: str = ""
    seconds: float = 0.0


def is_blank(grey: np.ndarray) -> bool:
    """True when an image has (almost) no contrast, judged on a subsample."""
    step = max(1, int(math.sqrt(grey.size / 65536)))
    low, high = np.percentile(grey[::step, ::step], [1.0, 99.0])
    return bool(high - low <= 1e-6 * max(1.0, abs(float(high))))


def plausibility_warning(
    prediction: Prediction, image_shape: tuple[int, int], typical_sigma_pct: float | None = None
) -> str | None:
    """A "no spine found?" message when a prediction does not look like a spine, else None.

    ``typical_sigma_pct`` is the model's median sigma on its validation films (percent of the
    image height, stored in the checkpoint's metrics); NFDP's sigma is a relative uncertainty,
    so it is only compared with the same model's own typical value.
    """
    height, width = image_shape[:2]
    points = prediction.landmarks
    if not np.isfinite(points).all():
        return "No spine found? The model gave no position for some landmarks."
    sigma_pct = 100 * float(np.median(prediction.sigma.mean(axis=1))) / height
    if typical_sigma_pct and sigma_pct > NO_SPINE_SIGMA_FACTOR * typical_sigma_pct:
        return (
            f"No spine found? The model is unsure everywhere (uncertainty {sigma_pct:.1f} % of "
            f"the image height, {sigma_pct / typical_sigma_pct:.1f} x its usual)."
        )
    margin = 0.05 * np.array([height, width])
    outside = ((points < -margin) | (points > np.array([height, width]) + margin)).any(axis=1)
    if outside.mean() > OUTSIDE_FRACTION:
        return f"No spine found? {int(outside.sum())} landmarks fall outside the image."
    if prediction.landmark_names == SPINE_LANDMARK_NAMES:
        centres = points.reshape(-1, 4, 2).mean(axis=1)
        disorder = int((np.diff(centres[:, 0]) <= 0).sum())
        if disorder > 2:
            return f"No spine found? {disorder} vertebrae are out of top-to-bottom order."
        if centres[-1, 0] - centres[0, 0] < MIN_SPINE_FRACTION * height:
            return "No spine found? The detected spine is implausibly short for this film."
    return None


def detect_landmarks(
    cache: LocalizerCache,
    model_path: Path,
    model_id: str,
    device: str | None,
    image: np.ndarray,
) -> DetectOutcome:
    """Run the model on one image; every failure becomes a message (never raises)."""
    from napari_nfdp.core.checkpoint import CheckpointError
    from napari_nfdp.core.preprocess import ImageError, to_grey_float32

    start = time.perf_counter()
    try:
        grey = to_grey_float32(np.asarray(image))
        if is_blank(grey):
            return DetectOutcome(
                error="No spine found? The image is blank (it has no contrast).", model_id=model_id
            )
        localizer = cache.get(model_path, device)
        prediction = localizer.predict(np.asarray(image))
        typical = localizer.checkpoint.metrics.get("val_sigma_pct")
    except ImageError as error:
        return DetectOutcome(error=f"Cannot analyse this image: {_describe(error)}")
    except (CheckpointError, FileNotFoundError) as error:
        return DetectOutcome(error=f"The model could not be loaded: {_describe(error)}")
    except (RuntimeError, ValueError, MemoryError) as error:
        return DetectOutcome(error=f"Detection failed: {_describe(error)}")
    return DetectOutcome(
        prediction=prediction,
        warning=plausibility_warning(prediction, grey.shape, typical),
        model_id=model_id,
        seconds=time.perf_counter() - start,
    )


def start_worker(function: Callable[..., Any], *args: Any) -> FunctionWorker:
    """A napari thread worker for ``function(*args)``, not started yet (connect, then start)."""
    return create_worker(function, *args, _start_thread=False)


# -- fine-tuning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Correction:
    """A saved image with human corrections: the image file and its sidecar."""

    image: Path
    sidecar: Path
    annotation: Annotation


def find_corrections(
    images: Sequence[Path], annotation_folder: Path | None, names: Sequence[str]
) -> tuple[list[Correction], list[str]]:
    """The images whose sidecar holds human corrections for the landmarks ``names``.

    A sidecar is looked up in ``annotation_folder`` first, then next to the image (as
    ``training.datasets.read_sidecars`` does). Returns the corrections and notes on skipped files.
    """
    found, notes = [], []
    for image in dict.fromkeys(images):
        sidecar = find_sidecar(image, annotation_folder)
        if sidecar is None:
            continue
        try:
            ann = read_annotation(sidecar)
        except ValueError as error:
            notes.append(f"skipped {sidecar.name}: {_describe(error)}")
            continue
        if "human" not in ann.source:
            continue
        if tuple(ann.landmark_names) != tuple(names):
            notes.append(f"skipped {sidecar.name}: its landmarks differ from the model's")
            continue
        found.append(Correction(image, sidecar, ann))
    return found, notes


@dataclass(frozen=True)
class FinetuneOutcome:
    """How a fine-tuning job ended: "published", "kept", "cancelled" or "failed"."""

    status: str
    message: str
    version: ModelVersion | None = None
    metrics: dict = field(default_factory=dict)
    n_images: int = 0


class FinetuneJob(QObject):
    """Fine-tunes the selected model on corrected images in a thread; cancel() really stops it.

    ``progress`` carries training's event dicts ("start", "baseline", "step", "epoch", "done",
    plus "loading" while images are read); ``finished`` carries a :class:`FinetuneOutcome`.
    The stop flag is polled between optimisation steps (and between image reads).
    """

    progress = Signal(dict)
    finished = Signal(object)

    def __init__(
        self,
        registry: ModelRegistry,
        base: ModelVersion,
        images: Sequence[Path],
        annotation_folder: Path | None,
        *,
        epochs: int | None = None,
        device: str | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.registry = registry
        self.base = base
        self.images = [Path(p) for p in images]
        self.annotation_folder = annotation_folder
        self.epochs = epochs
        self.device = device
        self._stop = threading.Event()
        self.worker: FunctionWorker | None = None
        if parent is not None:  # the widget closing stops the job too
            parent.destroyed.connect(self._stop.set)

    def start(self) -> FunctionWorker:
        """Start the job in a napari thread worker and return the worker."""
        self.worker = start_worker(self._run)
        self.worker.returned.connect(self.finished)
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Ask the job to stop at the next step; it then reports "cancelled"."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> FinetuneOutcome:
        try:
            return self._finetune()
        except Exception as error:  # noqa: BLE001 - a job must report, never raise into Qt
            return FinetuneOutcome("failed", f"Fine-tuning failed: {_describe(error)}")

    def _finetune(self) -> FinetuneOutcome:
        from napari_nfdp.core.checkpoint import load_checkpoint
        from napari_nfdp.io.images import read_image
        from training.finetune import finetune
        from training.loop import TrainingCancelled

        kept = f"kept {self.base.id}"
        names = load_checkpoint(self.base.path).landmark_names
        corrections, notes = find_corrections(self.images, self.annotation_folder, names)
        images, landmarks = [], []
        for i, item in enumerate(corrections):
            if self._stop.is_set():
                return FinetuneOutcome("cancelled", f"Fine-tuning cancelled; {kept}.")
            self.progress.emit({"event": "loading", "index": i + 1, "total": len(corrections)})
            try:
                image, _ = read_image(item.image)
            except (OSError, ValueError) as error:
                notes.append(f"skipped {item.image.name}: {_describe(error)}")
                continue
            if tuple(image.shape[:2]) != tuple(item.annotation.image_shape):
                notes.append(f"skipped {item.image.name}: its size differs from its annotation")
                continue
            images.append(image)
            landmarks.append(item.annotation.points)
        if not images:
            hint = "; ".join(notes)
            return FinetuneOutcome(
                "failed",
                "No corrected images to learn from: drag wrong points into place (they are "
                "saved automatically), then fine-tune." + (f" ({hint})" if hint else ""),
            )
        run = Path(tempfile.mkdtemp(prefix="nfdp-finetune-"))
        try:
            candidate = finetune(
                self.base.path,
                images,
                landmarks,
                run,
                epochs=self.epochs,
                progress=self.progress.emit,
                should_stop=self._stop.is_set,
                device=self.device,
            )
            if self._stop.is_set():
                raise TrainingCancelled("stopped after the last step")
            metrics = dict(load_checkpoint(candidate).metrics)
            version, reason = self.registry.publish(
                candidate, parent=self.base.id, n_images=len(images), metrics=metrics
            )
        except TrainingCancelled:
            return FinetuneOutcome("cancelled", f"Fine-tuning cancelled; {kept}.")
        finally:
            shutil.rmtree(run, ignore_errors=True)
        status = "published" if version is not None else "kept"
        message = f"Fine-tuned on {len(images)} image{'s' * (len(images) != 1)}: {reason}."
        if notes:
            message += " (" + "; ".join(notes) + ")"
        return FinetuneOutcome(status, message, version, metrics, len(images))
