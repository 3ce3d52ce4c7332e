"""The NFDP dock widget: detect landmarks, correct them with live Cobb angles, save, fine-tune.

The buttons call the public methods (``detect``, ``save``, ``finetune``, ...), so scripts and
tests drive the widget the same way a person does. Model work, image reading and fine-tuning
run in background workers (``jobs``); this module only moves their results into layers.

Each image layer gets a session: its landmark Points layer, its Cobb Shapes layer, an undo
history and the model's last prediction. The widget works on the session of the active layer.
"""

from __future__ import annotations

import csv
import html
import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Layer, Points, Shapes
from napari.qt.threading import FunctionWorker
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_nfdp.cli import iter_image_paths
from napari_nfdp.core.atomic import atomic_write
from napari_nfdp.core.cobb import CobbError, CobbResult, cobb_angles
from napari_nfdp.core.localizer import REVIEW_SIGMA_FACTOR
from napari_nfdp.core.registry import ModelRegistry, ModelVersion, RegistryError
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES, vertebra_range
from napari_nfdp.io.annotations import (
    SIDECAR_SUFFIX,
    Annotation,
    export_landmarks_csv,
    read_annotation,
    sidecar_path,
    write_annotation,
)
from napari_nfdp.io.overlay import CURVE_COLOURS
from napari_nfdp.ui._napari_shim import data_action, on_points_moving
from napari_nfdp.ui.history import Edit, EditHistory, PointRows
from napari_nfdp.ui.jobs import (
    DetectOutcome,
    FinetuneJob,
    FinetuneOutcome,
    LocalizerCache,
    OpenOutcome,
    detect_landmarks,
    read_image_layer,
    start_worker,
)
from napari_nfdp.ui.keybinds import bind_shortcuts, shortcut_text
from napari_nfdp.ui.layers import (
    landmark_features,
    make_cobb_layer,
    make_points_layer,
    restyle_points,
    show_cobb,
)

if TYPE_CHECKING:
    import napari.viewer

DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")
REPORT_COLUMNS: tuple[str, ...] = (
    "image",
    "status",
    "curve_type",
    "PT",
    "PT_ends",
    "MT",
    "MT_ends",
    "TL",
    "TL_ends",
    "human_points",
    "hidden_points",
)
_LEVEL_COLOURS = {"info": "", "warning": "color: #f0b400;", "error": "color: #ff5a5a;"}


class _Session:
    """The landmarks of one image layer and everything needed to edit and save them."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self.points: Points | None = None
        self.cobb: Shapes | None = None
        self.history = EditHistory()
        self.names: tuple[str, ...] = ()
        self.source: list[str] = []
        self.visible = np.zeros(0, dtype=bool)
        self.sigma: np.ndarray | None = None  # (K, 2) model sigma, image pixels
        self.model_points: np.ndarray | None = None  # reset target; NaN rows unknown
        self.model_id: str | None = None
        self.committed = np.zeros((0, 2))  # point positions as of the last recorded edit
        self.cobb_input: np.ndarray | None = None
        self.cobb_result: CobbResult | None = None
        self.cobb_error: str | None = None
        self.unconfirmed = False  # a doubtful detection nobody has touched: not autosaved yet
        self.blocked: str | None = None  # why autosave must not overwrite the sidecar
        self.disconnects: list[Callable[[], None]] = []

    @property
    def path(self) -> Path | None:
        path = self.image.metadata.get("path")
        return Path(path) if path else None

    @property
    def files(self) -> list[str]:
        return [str(f) for f in self.image.metadata.get("nfdp_files") or []]

    @property
    def index(self) -> int:
        return int(self.image.metadata.get("nfdp_index", 0))

    @property
    def pixels(self) -> Any:
        """The image array (the full-resolution level of a multiscale image)."""
        return self.image.data[0] if self.image.multiscale else self.image.data

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.pixels.shape[:2])

    @property
    def image_name(self) -> str:
        return self.path.name if self.path else self.image.name

    def annotation_points(self) -> np.ndarray:
        """The landmark positions with NaN rows for points marked not visible."""
        points = np.array(self.points.data if self.points is not None else self.committed)
        points[~self.visible] = np.nan
        return points

    def rows(self, indices: Sequence[int] | np.ndarray) -> PointRows:
        """The current state of some landmarks, for the undo history."""
        indices = np.asarray(indices, dtype=int)
        return PointRows(
            indices,
            self.committed[indices].copy(),
            tuple(self.source[i] for i in indices),
            self.visible[indices].copy(),
        )


class NFDPWidget(QWidget):
    """Dock widget: Detect landmarks, correct them with live Cobb angles, save, fine-tune."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._unbind_keys: Callable[[], None] | None = None
        self.viewer = viewer
        self.registry = ModelRegistry.default()
        self.annotation_folder: Path | None = None
        self.review_factor = float(REVIEW_SIGMA_FACTOR)
        self._sessions: list[_Session] = []
        self._session: _Session | None = None
        self._cache = LocalizerCache()
        self._detect_worker: FunctionWorker | None = None
        self._open_worker: FunctionWorker | None = None
        self._job: FinetuneJob | None = None
        self._applying = False
        self._steps = 1  # fine-tuning steps per epoch, for the progress bar
        self._pending: list[Callable[[], None]] = []
        self._build_ui()
        self._refresh_models()
        self._connect_viewer()
        self.destroyed.connect(partial(_on_destroyed, weakref.ref(self)))
        for layer in list(viewer.layers):
            if isinstance(layer, Image):
                self._attach(layer)
        self._update_controls()

    # -- public API (what the buttons and shortcuts call) -----------------------------------

    @property
    def points_layer(self) -> Points | None:
        """The landmark layer of the current image (None before detection)."""
        return self._session.points if self._session else None

    @property
    def cobb_layer(self) -> Shapes | None:
        """The Cobb line layer of the current image."""
        return self._session.cobb if self._session else None

    @property
    def image_layer(self) -> Image | None:
        """The image the widget currently works on."""
        return self._session.image if self._session else None

    @property
    def cobb_result(self) -> CobbResult | None:
        """The Cobb angles of the current landmarks (None when they cannot be measured)."""
        return self._session.cobb_result if self._session else None

    @property
    def busy(self) -> bool:
        """True while a detection or an image read is running."""
        return self._detect_worker is not None or self._open_worker is not None

    @property
    def finetune_job(self) -> FinetuneJob | None:
        """The running fine-tuning job, if any."""
        return self._job

    def detect(self) -> FunctionWorker | None:
        """Run the selected model on the current image in a worker; return the worker."""
        session = self._session
        if session is None:
            self._say("Open a radiograph first (File > Open, or Open… here).", "warning")
            return None
        if self._detect_worker is not None:
            self._say("Detection is already running.")
            return self._detect_worker
        data = session.pixels
        if data.ndim != 2 and not session.image.rgb:
            self._say(
                f"“{session.image.name}” is a {data.ndim}-D stack (shape {tuple(data.shape)}); "
                "landmarks need one 2-D radiograph. Open a single image.",
                "error",
            )
            return None
        try:
            version = self.registry.selected()
        except (RegistryError, KeyError) as error:
            self._say(str(error), "error")
            return None
        worker = start_worker(
            detect_landmarks, self._cache, version.path, version.id, self._device(), data
        )
        worker.returned.connect(partial(self._on_detected, session))
        worker.finished.connect(self._on_detect_finished)
        self._detect_worker = worker
        self.detect_busy.show()
        self._say(f"Detecting landmarks on {session.image_name} with {version.label}…")
        self._update_controls()
        worker.start()
        return worker

    def save(self) -> Path | None:
        """Write the current image's annotation now; return the sidecar path (None if not saved)."""
        session = self._session
        if session is None or session.points is None:
            self._say("Nothing to save yet: detect landmarks first.", "warning")
            return None
        return self._write(session, explicit=True)

    def finetune(self) -> FinetuneJob | None:
        """Fine-tune the selected model on the saved, corrected images in the background."""
        if self._job is not None:
            self._say("Fine-tuning is already running; Cancel stops it.")
            return self._job
        images = self._known_images()
        if not images:
            self._say(
                "Open the radiographs you corrected first (a folder of them is best).", "warning"
            )
            return None
        try:
            base = self.registry.selected()
        except (RegistryError, KeyError) as error:
            self._say(str(error), "error")
            return None
        job = FinetuneJob(
            self.registry,
            base,
            images,
            self.annotation_folder,
            epochs=self.epochs_spin.value() or None,
            device=self._device(),
            parent=self,
        )
        job.progress.connect(self._on_finetune_progress)
        job.finished.connect(self._on_finetune_finished)
        self._job = job
        self.finetune_bar.setRange(0, 0)
        self.finetune_bar.setFormat("Collecting corrected images…")
        self.finetune_bar.show()
        self.finetune_label.setText(f"Starting from {base.label}.")
        self._say(f"Fine-tuning {base.label} on your corrections…")
        self._update_controls()
        job.start()
        return job

    def cancel_finetune(self) -> None:
        """Stop a running fine-tune at its next step; the selected model stays."""
        if self._job is None:
            self._say("No fine-tuning is running.")
            return
        self._job.cancel()
        self.finetune_bar.setFormat("Cancelling…")
        self._say("Cancelling fine-tuning…")

    def undo(self) -> None:
        """Undo the last point edit of the current image."""
        session = self._session
        edit = session.history.undo() if session else None
        if edit is None:
            self._say("Nothing to undo.")
            return
        self._apply(session, edit.before)
        self._say(f"Undid {edit.label}.")

    def redo(self) -> None:
        """Redo the last undone point edit."""
        session = self._session
        edit = session.history.redo() if session else None
        if edit is None:
            self._say("Nothing to redo.")
            return
        self._apply(session, edit.after)
        self._say(f"Redid {edit.label}.")

    def reset_point(self, index: int) -> None:
        """Put one landmark back where the model placed it."""
        self._reset([index], label=None)

    def reset_selected(self) -> None:
        """Reset the selected points of the landmark layer to the model's prediction."""
        indices = self._selected()
        if indices:
            self._reset(indices, label=None)

    def reset_all(self) -> None:
        """Reset every corrected or hidden landmark to the model's prediction."""
        session = self._session
        if session is None or session.points is None:
            self._say("Nothing to reset: detect landmarks first.", "warning")
            return
        model = session.model_points
        moved = np.zeros(len(session.names), dtype=bool)
        if model is not None:
            moved = np.isfinite(model).all(axis=1) & (session.committed != model).any(axis=1)
        changed = [
            i
            for i in range(len(session.names))
            if session.source[i] == "human" or not session.visible[i] or moved[i]
        ]
        if not changed:
            self._say("Every landmark already is the model's prediction.")
            return
        self._reset(changed, label="reset all")

    def toggle_visible(self, index: int | None = None) -> None:
        """Mark the selected landmarks (or ``index``) not visible, or visible again."""
        session = self._session
        indices = [index] if index is not None else self._selected()
        if session is None or session.points is None:
            return
        indices = [i for i in indices if 0 <= i < len(session.names)]
        if not indices:
            return
        hide = bool(session.visible[indices].all())
        after = PointRows(
            np.asarray(indices),
            session.committed[indices].copy(),
            ("human",) * len(indices),
            np.full(len(indices), not hide),
        )
        what = "not visible" if hide else "visible"
        self._record(session, f"mark {self._what(session, indices)} {what}", after)
        self._say(f"Marked {self._what(session, indices)} {what}.")

    def toggle_labels(self) -> None:
        """Show or hide the vertebra labels next to the points."""
        self.labels_check.toggle()

    def next_image(self) -> FunctionWorker | None:
        """Open the next image of the folder (the current one is already saved)."""
        return self._step(+1)

    def previous_image(self) -> FunctionWorker | None:
        """Open the previous image of the folder."""
        return self._step(-1)

    def open_path(self, path: str | Path) -> FunctionWorker | None:
        """Open an image file or a folder of images (read in a worker); return the worker."""
        return self._open(Path(path))

    def add_checkpoint(self, path: str | Path) -> FunctionWorker:
        """Validate and copy a checkpoint file into the model list (in a worker) and select it."""
        path = Path(path)
        worker = start_worker(_add_checkpoint, self.registry, path)
        worker.returned.connect(self._on_checkpoint_added)
        self._say(f"Checking {path.name}…")
        worker.start()
        return worker

    def rollback(self) -> None:
        """Select the model version before the selected one."""
        try:
            version = self.registry.rollback()
        except RegistryError as error:
            self._say(str(error), "warning")
            return
        self._refresh_models()
        self._say(f"Rolled back: Detect now uses {version.label}.")

    def set_annotation_folder(self, folder: str | Path | None) -> None:
        """Keep sidecars in ``folder`` instead of next to the images (None: next to them)."""
        self.annotation_folder = Path(folder) if folder else None
        where = str(self.annotation_folder) if self.annotation_folder else "next to the images"
        self.folder_label.setText(where)
        self.folder_label.setToolTip(where)
        self._say(f"Annotations are saved {'in ' if folder else ''}{where}.")

    def export_landmarks_csv(self, path: str | Path) -> Path | None:
        """Write the landmarks of every annotated image of the folder as one CSV."""
        annotations = self._folder_annotations()
        if not annotations:
            self._say("No annotated images to export yet.", "warning")
            return None
        try:
            written = export_landmarks_csv(path, [ann for _, ann in annotations])
        except OSError as error:
            self._say(f"Could not write {path}: {error}", "error")
            return None
        self._say(f"Exported the landmarks of {len(annotations)} image(s) to {written}.")
        return written

    def export_cobb_report(self, path: str | Path) -> Path | None:
        """Write one CSV line of Cobb angles per annotated image of the folder."""
        annotations = self._folder_annotations()
        if not annotations:
            self._say("No annotated images to report on yet.", "warning")
            return None
        table = [list(REPORT_COLUMNS)] + [_report_row(name, ann) for name, ann in annotations]
        try:
            written = atomic_write(
                path, lambda handle: csv.writer(handle).writerows(table), text=True
            )
        except OSError as error:
            self._say(f"Could not write {path}: {error}", "error")
            return None
        self._say(f"Wrote the Cobb report of {len(annotations)} image(s) to {written}.")
        return written

    # -- life cycle: hooks on the viewer while the widget is docked ---------------------------

    def _hooks(self) -> list[tuple[Any, str]]:
        layers = self.viewer.layers
        return [
            (layers.events.inserted, "_on_layer_inserted"),
            (layers.events.removed, "_on_layer_removed"),
            (layers.selection.events.active, "_on_active_layer"),
        ]

    def _connect_viewer(self) -> None:
        if self._unbind_keys is None:
            for emitter, name in self._hooks():
                emitter.connect(getattr(self, name))
            self._unbind_keys = bind_shortcuts(self.viewer, self)

    def _disconnect_viewer(self) -> None:
        """Release the shortcuts and events and stop fine-tuning (the widget was removed)."""
        if self._unbind_keys is not None:
            self._unbind_keys()
            self._unbind_keys = None
            for emitter, name in self._hooks():
                emitter.disconnect(getattr(self, name))
        if self._job is not None:
            self._job.cancel()

    @property
    def _closed(self) -> bool:
        """True once the widget was taken out of the viewer (late results are dropped)."""
        return self._unbind_keys is None

    def event(self, event: QEvent) -> bool:
        """napari removes a dock widget by taking it out of its dock: unhook then."""
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is None:
                self._disconnect_viewer()
            else:
                self._connect_viewer()
        return super().event(event)

    # -- user interface ----------------------------------------------------------------------

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)

        model_box = QGroupBox("Model")
        grid = QGridLayout(model_box)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The model Detect uses; fine-tuning adds versions here")
        self.model_combo.activated.connect(self._on_model_chosen)
        self.add_button = _button(
            "Add…", "Add a checkpoint file to the list", self._choose_checkpoint
        )
        self.rollback_button = _button(
            "Roll back", "Select the version before the selected one", self.rollback
        )
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip("auto: the GPU when there is one, else the CPU")
        grid.addWidget(self.model_combo, 0, 0, 1, 3)
        grid.addWidget(self.add_button, 1, 0)
        grid.addWidget(self.rollback_button, 1, 1)
        grid.addWidget(self.device_combo, 1, 2)
        layout.addWidget(model_box)

        image_box = QGroupBox("Image")
        grid = QGridLayout(image_box)
        self.image_label = QLabel("no image")
        self.image_label.setWordWrap(True)
        self.previous_button = _button(
            "◀ Previous",
            _tip("Previous image of the folder", "previous_image"),
            self.previous_image,
        )
        self.next_button = _button(
            "Next ▶", _tip("Next image of the folder", "next_image"), self.next_image
        )
        open_button = _button("Open…", "Open a radiograph or a folder", self._choose_path)
        self.folder_label = QLabel("next to the images")
        folder_button = _button(
            "Folder…", "Keep annotations in a folder of your choice", self._choose_folder
        )
        grid.addWidget(self.image_label, 0, 0, 1, 3)
        grid.addWidget(self.previous_button, 1, 0)
        grid.addWidget(self.next_button, 1, 1)
        grid.addWidget(open_button, 1, 2)
        grid.addWidget(QLabel("Annotations:"), 2, 0)
        grid.addWidget(self.folder_label, 2, 1)
        grid.addWidget(folder_button, 2, 2)
        layout.addWidget(image_box)

        detect_box = QGroupBox("Landmarks")
        grid = QGridLayout(detect_box)
        self.detect_button = _button(
            "Detect landmarks", _tip("Run the selected model on this image", "detect"), self.detect
        )
        self.detect_busy = QProgressBar()
        self.detect_busy.setRange(0, 0)
        self.detect_busy.setFormat("Detecting…")
        self.detect_busy.setTextVisible(True)
        self.detect_busy.hide()
        self.labels_check = QCheckBox("Labels")
        self.labels_check.setToolTip(_tip("Show the vertebra names", "toggle_labels"))
        self.labels_check.toggled.connect(self._on_labels_toggled)
        self.review_spin = QDoubleSpinBox()
        self.review_spin.setRange(1.0, 20.0)
        self.review_spin.setSingleStep(0.5)
        self.review_spin.setValue(self.review_factor)
        self.review_spin.setPrefix("review σ > ")
        self.review_spin.setSuffix(" × median")
        self.review_spin.setToolTip(
            "Model points whose uncertainty exceeds this many times the median get a thick "
            "magenta border: check them first"
        )
        self.review_spin.valueChanged.connect(self._on_review_factor)
        self.undo_button = _button("Undo", _tip("Undo", "undo"), self.undo)
        self.redo_button = _button("Redo", _tip("Redo", "redo"), self.redo)
        self.reset_button = _button(
            "Reset point",
            _tip("Put the selected points back where the model placed them", "reset_selected"),
            self.reset_selected,
        )
        self.reset_all_button = _button(
            "Reset all", "Put every landmark back where the model placed it", self.reset_all
        )
        self.hide_button = _button(
            "Not visible",
            _tip("Mark the selected points not visible (or visible again)", "toggle_visible"),
            self.toggle_visible,
        )
        self.save_button = _button("Save", _tip("Save the annotation now", "save"), self.save)
        grid.addWidget(self.detect_button, 0, 0, 1, 3)
        grid.addWidget(self.detect_busy, 1, 0, 1, 3)
        grid.addWidget(self.labels_check, 2, 0)
        grid.addWidget(self.review_spin, 2, 1, 1, 2)
        grid.addWidget(self.undo_button, 3, 0)
        grid.addWidget(self.redo_button, 3, 1)
        grid.addWidget(self.hide_button, 3, 2)
        grid.addWidget(self.reset_button, 4, 0)
        grid.addWidget(self.reset_all_button, 4, 1)
        grid.addWidget(self.save_button, 4, 2)
        self.save_label = QLabel("")
        self.save_label.setWordWrap(True)
        self.save_label.setStyleSheet("color: gray;")
        grid.addWidget(self.save_label, 5, 0, 1, 3)
        layout.addWidget(detect_box)

        cobb_box = QGroupBox("Cobb angles")
        cobb_layout = QVBoxLayout(cobb_box)
        self.angles_label = QLabel("—")
        self.angles_label.setTextFormat(Qt.TextFormat.RichText)
        self.angles_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # room for the three angles and the curve type, so the dock never clips them
        self.angles_label.setMinimumHeight(5 * self.angles_label.fontMetrics().lineSpacing() + 6)
        cobb_layout.addWidget(self.angles_label)
        layout.addWidget(cobb_box)

        tune_box = QGroupBox("Fine-tune on my annotations")
        grid = QGridLayout(tune_box)
        self.finetune_button = _button(
            "Fine-tune",
            "Refit the selected model on the saved images you corrected; the new version is "
            "kept only if it is not worse on held-out images",
            self.finetune,
        )
        self.cancel_button = _button("Cancel", "Stop fine-tuning", self.cancel_finetune)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(0, 500)
        self.epochs_spin.setSpecialValueText("auto epochs")
        self.epochs_spin.setSuffix(" epochs")
        self.finetune_bar = QProgressBar()
        self.finetune_bar.setTextVisible(True)
        self.finetune_bar.hide()
        self.finetune_label = QLabel("")
        self.finetune_label.setWordWrap(True)
        grid.addWidget(self.finetune_button, 0, 0)
        grid.addWidget(self.epochs_spin, 0, 1)
        grid.addWidget(self.cancel_button, 0, 2)
        grid.addWidget(self.finetune_bar, 1, 0, 1, 3)
        grid.addWidget(self.finetune_label, 2, 0, 1, 3)
        layout.addWidget(tune_box)

        export_row = QHBoxLayout()
        export_row.addWidget(
            _button(
                "Export landmarks…",
                "All annotated images of the folder as one CSV",
                self._choose_landmarks_csv,
            )
        )
        export_row.addWidget(
            _button(
                "Cobb report…",
                "Cobb angles of all annotated images of the folder as one CSV",
                self._choose_report_csv,
            )
        )
        layout.addLayout(export_row)

        self.status = QLabel("Open a radiograph, then Detect landmarks.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _say(self, text: str, level: str = "info") -> None:
        """Show a message in the status line (info, warning or error)."""
        self.status.setText(text)
        self.status.setStyleSheet(_LEVEL_COLOURS.get(level, ""))

    def _update_controls(self) -> None:
        session = self._session
        has_points = session is not None and session.points is not None
        self.detect_button.setEnabled(session is not None and self._detect_worker is None)
        for button in (self.reset_button, self.reset_all_button, self.hide_button):
            button.setEnabled(has_points)
        self.save_button.setEnabled(has_points)
        history = session.history if session else None
        self.undo_button.setEnabled(bool(history and history.can_undo))
        self.redo_button.setEnabled(bool(history and history.can_redo))
        self.undo_button.setToolTip(
            _tip(f"Undo {history.undo_label or ''}", "undo") if history else ""
        )
        self.redo_button.setToolTip(
            _tip(f"Redo {history.redo_label or ''}", "redo") if history else ""
        )
        files, index = (session.files, session.index) if session else ([], 0)
        self.previous_button.setEnabled(len(files) > 1 and index > 0)
        self.next_button.setEnabled(len(files) > 1 and index < len(files) - 1)
        if session is None:
            self.image_label.setText("no image")
        else:
            where = f" — {index + 1} of {len(files)}" if len(files) > 1 else ""
            self.image_label.setText(f"{session.image_name}{where}")
        running = self._job is not None
        self.finetune_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for control in (self.model_combo, self.add_button, self.rollback_button):
            control.setEnabled(not running)  # the job publishes into the registry

    def _refresh_models(self) -> None:
        self.model_combo.clear()
        try:
            versions = self.registry.versions()
            selected = self.registry.selected().id
        except (RegistryError, KeyError) as error:
            self._say(str(error), "error")
            return
        for version in versions:
            missing = "" if version.path.is_file() else " (file missing)"
            self.model_combo.addItem(version.label + missing, version.id)
            self.model_combo.setItemData(
                self.model_combo.count() - 1, _version_tip(version), Qt.ItemDataRole.ToolTipRole
            )
        self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(selected)))

    def _on_model_chosen(self, index: int) -> None:
        version_id = self.model_combo.itemData(index)
        try:
            version = self.registry.select(version_id)
        except (RegistryError, KeyError) as error:
            self._say(str(error), "error")
            self._refresh_models()
            return
        self._say(f"Detect now uses {version.label}.")

    def _on_checkpoint_added(self, result: tuple[ModelVersion | None, str]) -> None:
        if self._closed:
            return
        version, message = result
        self._refresh_models()
        self._say(message, "info" if version is not None else "error")

    def _device(self) -> str | None:
        device = self.device_combo.currentText()
        return None if device == "auto" else device

    def _on_labels_toggled(self, on: bool) -> None:
        for session in self._sessions:
            if session.points is not None:
                session.points.text.visible = on

    def _on_review_factor(self, value: float) -> None:
        self.review_factor = float(value)
        for session in self._sessions:
            self._restyle(session)

    # file dialogs (thin: they only pick a path for the public methods)

    def _choose_path(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open a radiograph",
            "",
            "Radiographs (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)",
        )
        if path:
            self.open_path(path)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the annotations")
        self.set_annotation_folder(folder or None)

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a model checkpoint", "", "Checkpoints (*.pt *.pth);;All files (*)"
        )
        if path:
            self.add_checkpoint(path)

    def _choose_landmarks_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export landmarks", "landmarks.csv", "CSV (*.csv)"
        )
        if path:
            self.export_landmarks_csv(path)

    def _choose_report_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Cobb report", "cobb_report.csv", "CSV (*.csv)")
        if path:
            self.export_cobb_report(path)

    # -- sessions: which image the widget works on -------------------------------------------

    def _session_of(self, layer: Layer | None) -> _Session | None:
        for session in self._sessions:
            if layer is not None and layer in (session.image, session.points, session.cobb):
                return session
        return None

    def _attach(self, image: Image) -> _Session:
        """The session of an image layer, created (and its saved annotation restored) if new."""
        session = self._session_of(image)
        if session is None:
            session = _Session(image)
            self._sessions.append(session)
            self._restore(session)
        self._session = session
        self._update_controls()
        self._show_angles(session)
        return session

    def _on_layer_inserted(self, event: Any) -> None:
        layer = event.value
        if isinstance(layer, Image) and self._session_of(layer) is None:
            # let napari finish adding the layer before we add the landmark layers above it
            self._later(partial(self._attach_if_present, layer))

    def _attach_if_present(self, layer: Image) -> None:
        if layer in self.viewer.layers:
            self._attach(layer)

    def _later(self, call: Callable[[], None]) -> None:
        """Run ``call`` once napari has finished the event being handled (never if closed)."""
        self._pending.append(call)
        QTimer.singleShot(0, self._run_pending)

    def _run_pending(self) -> None:
        calls, self._pending = self._pending, []
        for call in calls:
            call()

    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        session = self._session_of(layer)
        if session is None:
            return
        if layer is session.image:
            self._close_session(session)
        elif layer is session.points:
            self._drop_points(session)
            self._say(
                "The landmark layer was removed; the saved annotation is kept. Detect again, "
                "or reopen the image, to bring the points back."
            )
        elif layer is session.cobb:
            session.cobb = None
        self._update_controls()

    def _on_active_layer(self, event: Any) -> None:
        session = self._session_of(event.value)
        if session is not None and session is not self._session:
            self._session = session
            self._update_controls()
            self._show_angles(session)

    def _close_session(self, session: _Session) -> None:
        self._sessions.remove(session)
        for layer in (session.points, session.cobb):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._drop_points(session)
        if self._session is session:
            self._session = self._sessions[-1] if self._sessions else None
            self._show_angles(self._session)

    def _drop_points(self, session: _Session) -> None:
        for disconnect in session.disconnects:
            disconnect()
        session.disconnects.clear()
        session.points = None
        if session.cobb is not None and session.cobb in self.viewer.layers:
            self.viewer.layers.remove(session.cobb)
        session.cobb = None
        session.history.clear()
        session.cobb_input = session.cobb_result = None
        self._show_angles(session)

    # -- opening images ----------------------------------------------------------------------

    def _step(self, delta: int) -> FunctionWorker | None:
        session = self._session
        files = session.files if session else []
        if len(files) < 2:
            self._say("This image is not part of a folder: open a folder to step through it.")
            return None
        index = session.index + delta
        if not 0 <= index < len(files):
            edge = "last" if delta > 0 else "first"
            self._say(
                f"This is the {edge} image of the folder ({session.index + 1} of {len(files)})."
            )
            return None
        return self._open(Path(files[index]), files=files, index=index, replace=session)

    def _open(
        self,
        path: Path,
        *,
        files: Sequence[str] | None = None,
        index: int = 0,
        replace: _Session | None = None,
    ) -> FunctionWorker | None:
        if self._open_worker is not None:
            self._say("Still opening the previous image…")
            return None
        worker = start_worker(read_image_layer, path, files, index)
        worker.returned.connect(partial(self._on_opened, replace))
        worker.finished.connect(self._on_open_finished)
        self._open_worker = worker
        self._say(f"Opening {path.name}…")
        worker.start()
        return worker

    def _on_open_finished(self) -> None:
        self._open_worker = None

    def _on_opened(self, replace: _Session | None, outcome: OpenOutcome) -> None:
        if self._closed:
            return
        if outcome.error or outcome.layer_data is None:
            self._say(outcome.error or f"Cannot open {outcome.path.name}.", "error")
            return
        data, kwargs, _ = outcome.layer_data
        if replace is not None and replace in self._sessions:
            self.viewer.layers.remove(replace.image)
        layer = Image(data, **kwargs)
        self.viewer.add_layer(layer)
        session = self._attach(layer)
        self.viewer.reset_view()
        if session.points is not None:
            self.viewer.layers.selection.active = session.points
        elif session.blocked is None:
            self._say(f"Opened {session.image_name}. Detect landmarks when ready.")

    # -- detection ---------------------------------------------------------------------------

    def _on_detect_finished(self) -> None:
        self._detect_worker = None
        if self._closed:
            return
        self.detect_busy.hide()
        self._update_controls()

    def _on_detected(self, session: _Session, outcome: DetectOutcome) -> None:
        if self._closed or session not in self._sessions:
            return  # the widget or the image was closed meanwhile
        if outcome.error or outcome.prediction is None:
            self._say(outcome.error or "Detection failed.", "error")
            return
        prediction = outcome.prediction
        names = tuple(prediction.landmark_names)
        if session.points is not None and names != session.names:
            self._say(
                f"The selected model predicts {len(names)} landmarks, but this image's "
                f"annotation has {len(session.names)}: choose a matching model or remove the "
                "landmark layer to start over.",
                "error",
            )
            return
        if outcome.warning and session.points is not None:
            self._say(outcome.warning + " Your existing points were left unchanged.", "warning")
            return
        session.model_points = np.array(prediction.landmarks, dtype=float)
        session.sigma = np.array(prediction.sigma, dtype=float)
        session.model_id = outcome.model_id
        if session.points is None:
            session.names = names
            session.source = ["model"] * len(names)
            session.visible = np.ones(len(names), dtype=bool)
            session.committed = session.model_points.copy()
            session.unconfirmed = outcome.warning is not None
            self._make_layers(session)
            kept = 0
        else:
            keep = np.array([s == "human" for s in session.source])
            kept = int(keep.sum())
            changed = np.flatnonzero(
                ~keep & ((session.committed != session.model_points).any(axis=1) | ~session.visible)
            )
            after = PointRows(
                changed,
                session.model_points[changed].copy(),
                ("model",) * len(changed),
                np.ones(len(changed), dtype=bool),
            )
            self._record(session, "detect", after)
        self._restyle(session)
        self._update_cobb(session)
        review = int(session.points.features["review"].sum())
        parts = [f"Detected {len(names)} landmarks in {outcome.seconds:.1f} s"]
        if kept:
            parts.append(f"kept your {kept} corrected point{'s' * (kept != 1)}")
        if review:
            parts.append(f"{review} flagged for review (magenta border)")
        message = "; ".join(parts) + "."
        if outcome.warning:
            self._say(
                f"{outcome.warning} The points are shown for checking but not saved: correct "
                "them, or press Save to keep them.",
                "warning",
            )
        else:
            self._say(message)
            self._write(session, explicit=False)
        if session is self._session:
            self.viewer.layers.selection.active = session.points
        self._update_controls()

    def _make_layers(self, session: _Session) -> None:
        """Add the Cobb and landmark layers of a session above its image."""
        session.cobb = make_cobb_layer(session.image)
        self.viewer.add_layer(session.cobb)
        features = self._features(session)
        session.points = make_points_layer(
            session.image, session.committed, features, labels=self.labels_check.isChecked()
        )
        self.viewer.add_layer(session.points)
        session.points.mode = "select"  # ready to drag
        points, on_data = session.points, partial(self._on_points_data, session)
        points.events.data.connect(on_data)
        session.disconnects += [
            lambda: points.events.data.disconnect(on_data),
            on_points_moving(points, partial(self._update_cobb, session)),
        ]
        session.history.clear()

    def _features(self, session: _Session):
        return landmark_features(
            session.names, session.source, session.visible, session.sigma, self.review_factor
        )

    def _restyle(self, session: _Session) -> None:
        if session.points is not None:
            restyle_points(session.points, self._features(session))

    # -- editing -----------------------------------------------------------------------------

    def _on_points_data(self, session: _Session, event: Any) -> None:
        if self._applying or session.points is None:
            return
        action = data_action(event)
        if action in ("added", "removed") or len(session.points.data) != len(session.names):
            if action in ("added", "removed"):
                self._later(partial(self._restore_points, session))
                self._say(
                    "Landmarks cannot be added or deleted: drag them into place, or mark them "
                    f"not visible ({shortcut_text('toggle_visible')}).",
                    "warning",
                )
            return
        if action == "changed":
            self._commit_moves(session)

    def _restore_points(self, session: _Session) -> None:
        if session.points is None:
            return
        with self._guard():
            session.points.data = session.committed.copy()
        self._restyle(session)
        self._update_cobb(session)

    def _commit_moves(self, session: _Session) -> None:
        """Record the points that moved since the last edit as one human edit."""
        data = np.asarray(session.points.data, dtype=float)
        moved = np.flatnonzero((data != session.committed).any(axis=1))
        if moved.size == 0:
            return
        before = session.rows(moved)
        after = PointRows(moved, data[moved].copy(), ("human",) * moved.size, before.visible)
        session.history.push(Edit(f"move {self._what(session, moved)}", before, after))
        self._set_rows(session, after)
        self._changed(session)

    def _record(self, session: _Session, label: str, after: PointRows) -> None:
        """Apply a change made by a button and put it on the undo stack."""
        if len(after.indices) == 0:
            return
        edit = Edit(label, session.rows(after.indices), after)
        session.history.push(edit)
        self._apply(session, after)

    def _apply(self, session: _Session, rows: PointRows) -> None:
        """Move the layer's points to ``rows`` (without recording an edit) and save."""
        data = np.array(session.points.data, dtype=float)
        data[rows.indices] = rows.positions
        with self._guard():
            session.points.data = data
        self._set_rows(session, rows)
        self._changed(session)

    def _set_rows(self, session: _Session, rows: PointRows) -> None:
        session.committed[rows.indices] = rows.positions
        for i, source in zip(rows.indices, rows.source, strict=True):
            session.source[i] = source
        session.visible[rows.indices] = rows.visible

    def _changed(self, session: _Session) -> None:
        session.unconfirmed = False
        self._restyle(session)
        self._update_cobb(session)
        self._write(session, explicit=False)
        self._update_controls()

    def _reset(self, indices: Sequence[int], label: str | None) -> None:
        session = self._session
        if session is None or session.points is None:
            self._say("Nothing to reset: detect landmarks first.", "warning")
            return
        model = session.model_points
        indices = [i for i in indices if 0 <= i < len(session.names)]
        if not indices:
            return
        unknown = [i for i in indices if model is None or not np.isfinite(model[i]).all()]
        if unknown:
            self._say(
                f"The model's position of {self._what(session, unknown)} is not known (the "
                "annotation was reopened from disk): run Detect first; it keeps your corrections.",
                "warning",
            )
            return
        after = PointRows(
            np.asarray(indices, dtype=int),
            model[indices].copy(),
            ("model",) * len(indices),
            np.ones(len(indices), dtype=bool),
        )
        self._record(session, label or f"reset {self._what(session, indices)}", after)
        self._say(f"Back at the model's position: {self._what(session, indices)}.")

    def _selected(self) -> list[int]:
        layer = self.points_layer
        if layer is None:
            self._say("Detect landmarks first.", "warning")
            return []
        selected = sorted(layer.selected_data)
        if not selected:
            self._say("Select one or more points first (click them in the landmark layer).")
        return selected

    @staticmethod
    def _what(session: _Session, indices: Sequence[int] | np.ndarray) -> str:
        indices = list(indices)
        return session.names[indices[0]] if len(indices) == 1 else f"{len(indices)} points"

    @contextmanager
    def _guard(self):
        self._applying = True
        try:
            yield
        finally:
            self._applying = False

    # -- Cobb angles -------------------------------------------------------------------------

    def _update_cobb(self, session: _Session) -> None:
        """Recompute the Cobb angles from the layer's points (cheap: runs while dragging)."""
        if session.points is None or session.names != SPINE_LANDMARK_NAMES:
            return
        points = np.array(session.points.data, dtype=float)
        if points.shape != session.committed.shape:
            return
        points[~session.visible] = np.nan
        if session.cobb_input is not None and np.array_equal(
            points, session.cobb_input, equal_nan=True
        ):
            return
        session.cobb_input = points
        try:
            session.cobb_result = cobb_angles(points, session.shape[0])
            session.cobb_error = None
        except CobbError as error:
            session.cobb_result, session.cobb_error = None, str(error)
        if session.cobb is not None:
            show_cobb(session.cobb, session.cobb_result)
        if session is self._session:
            self._show_angles(session)

    def _show_angles(self, session: _Session | None) -> None:
        if session is None or session.points is None:
            self.angles_label.setText("—")
        elif session.names != SPINE_LANDMARK_NAMES:
            self.angles_label.setText("Cobb angles need the 68-landmark spine model.")
        elif session.cobb_result is None:
            self.angles_label.setText(html.escape(session.cobb_error or "—"))
        else:
            self.angles_label.setText(_angles_html(session.cobb_result))

    # -- saving and restoring ----------------------------------------------------------------

    def _sidecar(self, session: _Session) -> Path | None:
        if session.path is not None:
            return sidecar_path(session.path, self.annotation_folder)
        if self.annotation_folder is not None:
            return self.annotation_folder / f"{session.image.name}{SIDECAR_SUFFIX}"
        return None

    def _write(self, session: _Session, *, explicit: bool) -> Path | None:
        """Write a session's sidecar atomically (autosave unless ``explicit``)."""
        if session.points is None:
            return None
        target = self._sidecar(session)
        if target is None:
            note = (
                "Not saved: this image has no file on disk. Choose an annotation folder to keep "
                "the corrections."
            )
            self.save_label.setText(note)
            if explicit:
                self._say(note, "warning")
            return None
        if not explicit and session.blocked:
            self.save_label.setText(
                f"Autosave is off: {session.blocked}. Save keeps the old file as "
                f"{target.name}.unreadable and writes a new one."
            )
            return None
        if not explicit and session.unconfirmed:
            self.save_label.setText("Not saved yet: check the points, then correct or Save.")
            return None
        if session.blocked and target.exists():
            backup = target.with_name(target.name + ".unreadable")
            try:
                target.replace(backup)
            except OSError as error:
                self._say(f"Could not move the unreadable {target.name} aside: {error}", "error")
                return None
            self._say(f"The unreadable old annotation was kept as {backup.name}.", "warning")
        spacing = session.image.metadata.get("spacing")
        try:
            annotation = Annotation(
                image_name=session.image_name,
                image_shape=session.shape,
                landmark_names=session.names,
                points=session.annotation_points(),
                source=list(session.source),
                sigma=session.sigma,
                spacing=tuple(spacing) if spacing else None,
                model=session.model_id,
            )
            write_annotation(target, annotation)
        except (OSError, ValueError) as error:
            self._say(f"Could not save {target}: {error}", "error")
            return None
        session.blocked = None
        session.unconfirmed = False
        stamp = datetime.now().strftime("%H:%M:%S")
        self.save_label.setText(f"Saved at {stamp}: {target.name}")
        self.save_label.setToolTip(str(target))
        if explicit:
            self._say(f"Saved {target}.")
        return target

    def _restore(self, session: _Session) -> None:
        """Bring back the saved landmarks of a newly opened image, if it has a sidecar."""
        target = self._sidecar(session)
        if target is None or not target.is_file():
            return
        try:
            annotation = read_annotation(target)
        except (OSError, ValueError) as error:
            session.blocked = "the saved annotation could not be read"
            self._say(
                f"Could not read the saved annotation {target.name}: {error}. It was left "
                "untouched and autosave is off for this image (Save keeps the old file as "
                ".unreadable).",
                "error",
            )
            return
        if tuple(annotation.image_shape) != session.shape:
            session.blocked = "the saved annotation is for an image of another size"
            self._say(
                f"{target.name} was made for an image of {annotation.image_shape[0]} x "
                f"{annotation.image_shape[1]} pixels, not {session.shape[0]} x "
                f"{session.shape[1]}: it was left untouched and autosave is off for this image.",
                "error",
            )
            return
        points = np.array(annotation.points, dtype=float)
        visible = np.isfinite(points).all(axis=1)
        if not visible.any():
            self._say(f"{target.name} holds no visible landmark; nothing restored.", "warning")
            return
        session.names = tuple(annotation.landmark_names)
        session.source = list(annotation.source)
        session.visible = visible
        session.sigma = annotation.sigma
        session.model_id = annotation.model
        session.committed = _fill_hidden(points)
        model = session.committed.copy()
        model[[s != "model" for s in session.source]] = np.nan
        session.model_points = model
        self._make_layers(session)
        self._restyle(session)
        self._update_cobb(session)
        human = session.source.count("human")
        self._say(
            f"Restored {len(points)} landmarks of {session.image_name} ({human} corrected by "
            f"you) from {target.name}."
        )

    def _known_images(self) -> list[Path]:
        """The image files the open images come from, and the other images of their folders."""
        images: list[Path] = []
        for session in self._sessions:
            if session.path is None:
                continue
            images += [Path(f) for f in session.files or [session.path]]
            try:
                images += list(iter_image_paths([session.path.parent]))
            except OSError:
                continue
        return list(dict.fromkeys(images))

    def _folder_annotations(self) -> list[tuple[str, Annotation]]:
        """(image name, annotation) of every saved image of the current folder."""
        session = self._session
        if session is None:
            return []
        rows: list[tuple[str, Annotation]] = []
        paths = [Path(f) for f in session.files] or ([session.path] if session.path else [])
        for path in paths:
            target = sidecar_path(path, self.annotation_folder)
            if target.is_file():
                try:
                    rows.append((path.name, read_annotation(target)))
                except ValueError:
                    continue
        if not paths and session.points is not None:
            rows.append((session.image_name, self._live_annotation(session)))
        return rows

    def _live_annotation(self, session: _Session) -> Annotation:
        return Annotation(
            image_name=session.image_name,
            image_shape=session.shape,
            landmark_names=session.names,
            points=session.annotation_points(),
            source=list(session.source),
            sigma=session.sigma,
            model=session.model_id,
        )

    # -- fine-tuning -------------------------------------------------------------------------

    def _on_finetune_progress(self, event: dict) -> None:
        bar = self.finetune_bar
        kind = event.get("event")
        if kind == "loading":
            bar.setRange(0, int(event["total"]))
            bar.setValue(int(event["index"]))
            bar.setFormat("Reading corrected images %v/%m")
        elif kind == "baseline":
            self.finetune_label.setText(
                f"Validation MRE before: {event['val_mre_pct']:.2f} % of the image height "
                f"({event['holdout_images']} held-out image(s))."
            )
        elif kind == "start":
            self._steps = max(1, int(event.get("steps_per_epoch", 1)))
            bar.setRange(0, int(event["epochs"]) * self._steps)
            bar.setValue(0)
            bar.setFormat("Training…")
        elif kind == "step":
            bar.setValue((int(event["epoch"]) - 1) * self._steps + int(event["step"]))
            bar.setFormat(f"Epoch {event['epoch']} · loss {event['loss']:.3g}")
        elif kind == "epoch":
            bar.setFormat(
                f"Epoch {event['epoch']}/{event['epochs']} · loss {event['loss']:.3g} · "
                f"val MRE {event['val_mre_pct']:.2f} %"
            )

    def _on_finetune_finished(self, outcome: FinetuneOutcome) -> None:
        self._job = None
        self.finetune_bar.hide()
        self._refresh_models()
        self.finetune_label.setText(outcome.message)
        level = {"published": "info", "cancelled": "info", "kept": "warning"}.get(
            outcome.status, "error"
        )
        self._say(outcome.message, level)
        self._update_controls()


# -- helpers -----------------------------------------------------------------------------------


def _on_destroyed(ref: weakref.ref, *_: Any) -> None:
    widget = ref()
    if widget is not None:
        widget._disconnect_viewer()


def _button(text: str, tip: str, slot: Callable[[], Any]) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(lambda _checked=False: slot())
    return button


def _tip(text: str, action: str) -> str:
    key = shortcut_text(action)
    return f"{text} ({key})" if key else text


def _version_tip(version: ModelVersion) -> str:
    lines = [f"{version.id}: {version.path}"]
    if version.parent:
        lines.append(f"fine-tuned from {version.parent} on {version.n_images} image(s)")
    before = version.metrics.get("val_mre_pct_before")
    after = version.metrics.get("val_mre_pct_after")
    if before is not None and after is not None:
        lines.append(f"validation MRE {before:.2f} % -> {after:.2f} %")
    return "\n".join(lines)


def _add_checkpoint(registry: ModelRegistry, path: Path) -> tuple[ModelVersion | None, str]:
    """Copy a checkpoint into the registry (worker thread); errors become the message."""
    try:
        version = registry.add_file(path)
    except (OSError, ValueError, RegistryError) as error:
        return None, f"Cannot use {path.name} as a model: {error}"
    return version, f"Added {path.name} as {version.id}; Detect now uses it."


def _angles_html(result: CobbResult) -> str:
    lines = []
    for curve in result.curves:
        colour = "#{:02x}{:02x}{:02x}".format(*CURVE_COLOURS.get(curve.name, (255, 255, 255)))
        text = html.escape(result.describe(curve.name))
        weight = "bold" if curve.name == result.main else "normal"
        lines.append(f'<span style="color:{colour}; font-weight:{weight}">{text}</span>')
    shape = "S-shaped (two curves)" if result.curve_type == "S" else "C-shaped (one curve)"
    lines.append(f"Curve type: {result.curve_type} — {shape}")
    return "<br>".join(lines)


def _fill_hidden(points: np.ndarray) -> np.ndarray:
    """Positions for NaN rows (not visible landmarks), so they can be shown and dragged.

    A hidden point goes where its visible neighbours in the landmark order suggest (linear
    interpolation per coordinate), or to the centre of the visible ones.
    """
    points = np.array(points, dtype=float)
    visible = np.isfinite(points).all(axis=1)
    if visible.all() or not visible.any():
        return points
    order = np.arange(len(points))
    for axis in (0, 1):
        points[~visible, axis] = np.interp(order[~visible], order[visible], points[visible, axis])
    return points


def _report_row(name: str, annotation: Annotation) -> list[object]:
    """One line of the Cobb report."""
    human = annotation.source.count("human")
    hidden = int((~np.isfinite(annotation.points).all(axis=1)).sum())
    if tuple(annotation.landmark_names) != SPINE_LANDMARK_NAMES:
        return [name, "not a 68-landmark spine annotation", "", *[""] * 6, human, hidden]
    try:
        result = cobb_angles(annotation.points, annotation.image_shape[0])
    except CobbError as error:
        return [name, f"no Cobb angles: {error}", "", *[""] * 6, human, hidden]
    cells: list[object] = [name, "ok", result.curve_type]
    for curve in result.curves:
        cells += [f"{curve.angle:.1f}", vertebra_range(curve.upper, curve.lower)]
    return [*cells, human, hidden]
