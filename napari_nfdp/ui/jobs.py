"""Background work for the dock widget: reading images, detection and fine-tuning.

Everything here runs off the GUI thread and never touches layers or widgets: the functions
return plain outcome objects (errors included, as clear text) that the widget applies when the
worker's ``returned`` signal arrives. Heavy imports (torch, training) happen in the worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import FunctionWorker, create_worker
from qtpy.QtCore import QObject, Signal

from napari_nfdp.core.messages import describe_error
from training.events import FinetuneResult

if TYPE_CHECKING:
    from napari_nfdp._reader import LayerData
    from napari_nfdp.core.detection import Detection
    from napari_nfdp.core.localizer import Localizer
    from napari_nfdp.core.registry import ModelRegistry, ModelVersion

logger = logging.getLogger(__name__)


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
        text = describe_error(error, path.name)
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


def detect_landmarks(
    cache: LocalizerCache,
    model_path: Path,
    model_id: str,
    device: str | None,
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
) -> Detection:
    """Load the model (cached) and run the one detect path on an image; never raises."""
    from napari_nfdp.core.checkpoint import CheckpointError
    from napari_nfdp.core.detection import Detection, detect

    try:
        localizer = cache.get(model_path, device)
    except (CheckpointError, FileNotFoundError, RuntimeError, ValueError) as error:
        logger.exception("could not load the model %s", model_path)
        shape = tuple(int(n) for n in np.shape(image)[:2])
        return Detection(shape, error=f"The model could not be loaded: {describe_error(error)}")
    return detect(localizer, image, spacing=spacing, model_id=model_id)


def start_worker(
    function: Callable[..., Any],
    *args: Any,
    on_error: Callable[[str], None] | None = None,
    activity: str | None = None,
) -> FunctionWorker:
    """A napari thread worker for ``function(*args)``, not started yet (connect, then start).

    ``on_error`` receives, on the GUI thread, the text of an exception ``function`` raised
    (logged with its traceback) instead of napari re-raising it. ``activity`` names a busy
    bar in napari's activity dock for as long as the worker runs (napari closes it).
    """
    worker = create_worker(
        function,
        *args,
        _start_thread=False,
        _ignore_errors=on_error is not None,
        _progress={"desc": activity} if activity else None,
    )
    if on_error is not None:
        worker.errored.connect(partial(_report_error, function, on_error))
    return worker


def _report_error(
    function: Callable[..., Any], on_error: Callable[[str], None], error: BaseException
) -> None:
    logger.error("%s failed", getattr(function, "__name__", function), exc_info=error)
    on_error(describe_error(error))


# -- fine-tuning -----------------------------------------------------------------------------

# How a fine-tune ended: "published", "kept", "cancelled" or "failed" (see FinetuneResult).
FinetuneOutcome = FinetuneResult


class FinetuneJob(QObject):
    """Fine-tunes the selected model on corrected images in a thread; cancel() really stops it.

    The work is :func:`training.finetune.finetune_and_publish` (the same path as
    ``python -m training finetune``). ``progress`` carries its :mod:`training.events`
    (``Loading``, ``Baseline``, ``Started``, ``Step``, ``EpochDone``, ``Done``); ``finished``
    carries a :class:`FinetuneOutcome`. The stop flag is polled between optimisation steps
    (and between image reads).
    """

    progress = Signal(object)
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
            logger.exception("fine-tuning %s failed", self.base.id)
            return FinetuneOutcome("failed", f"Fine-tuning failed: {describe_error(error)}")

    def _finetune(self) -> FinetuneOutcome:
        from training.finetune import finetune_and_publish

        return finetune_and_publish(
            self.registry,
            self.base,
            self.images,
            self.annotation_folder,
            epochs=self.epochs,
            device=self.device,
            progress=self.progress.emit,
            should_stop=self._stop.is_set,
        )
