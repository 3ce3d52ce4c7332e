"""The NFDP dock widget: wiring of napari layers and buttons to the landmark sessions.

The buttons and shortcuts call the public methods (``detect``, ``save``, ``undo``, ...), so
scripts and tests drive the widget the way a person does. Decisions live elsewhere: a film's
landmarks in its :class:`~napari_nfdp.core.session.LandmarkSession`, the detect path in
:mod:`napari_nfdp.core.detection` (run in a worker), sidecar rules in :mod:`.autosave`, the
controls in :mod:`.panel` and :mod:`.model_controls`. Layers only ever get copies.

Each image layer in the viewer is a view (:class:`~.editing.FilmLayers`) showing one film at a
time; Next / Previous put the next film of the folder into the same layers.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image, Layer, Points, Shapes
from napari.qt.threading import FunctionWorker
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QWidget

from napari_nfdp.core.cobb import CobbResult
from napari_nfdp.core.detection import Detection
from napari_nfdp.core.registry import ModelRegistry, RegistryError
from napari_nfdp.core.session import DoubtfulDetection, LandmarkSession
from napari_nfdp.io.films import Film, FilmShelf
from napari_nfdp.ui.autosave import Autosaver
from napari_nfdp.ui.editing import FilmLayers
from napari_nfdp.ui.file_actions import FileActions
from napari_nfdp.ui.jobs import (
    LocalizerCache,
    OpenOutcome,
    detect_landmarks,
    read_image_layer,
    start_worker,
)
from napari_nfdp.ui.keybinds import bind_shortcuts
from napari_nfdp.ui.layers import landmark_features
from napari_nfdp.ui.panel import ControlState, spacing_text

if TYPE_CHECKING:
    import napari.viewer


class NFDPWidget(FileActions):
    """Dock widget: Detect landmarks, correct them with live Cobb angles, save, fine-tune."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._unbind_keys: Callable[[], None] | None = None
        self.viewer = viewer
        self.registry = ModelRegistry.default()
        self.films = FilmShelf()
        self.autosaver = Autosaver(self._autosave, self)
        self._views: list[FilmLayers] = []
        self._view: FilmLayers | None = None
        self._cobb: dict[str, tuple[CobbResult | None, str | None]] = {}
        self._cache = LocalizerCache()
        self._detect_worker: FunctionWorker | None = None
        self._open_worker: FunctionWorker | None = None
        self._job = None
        self._pending: list[Callable[[], None]] = []
        self._refresh_models()
        self._connect_viewer()
        self.destroyed.connect(partial(_on_destroyed, weakref.ref(self)))
        for layer in list(viewer.layers):
            if isinstance(layer, Image):
                self._attach(layer)
        self._update_controls()

    # -- what the widget shows now ------------------------------------------------------------

    @property
    def points_layer(self) -> Points | None:
        """The landmark layer of the current image (None before detection)."""
        view = self._view
        return view.points if view and self._session(view) is not None else None

    @property
    def cobb_layer(self) -> Shapes | None:
        """The Cobb line layer of the current image."""
        return self._view.cobb if self.points_layer is not None else None

    @property
    def image_layer(self) -> Image | None:
        """The image the widget currently works on."""
        return self._view.image if self._view else None

    @property
    def session(self) -> LandmarkSession | None:
        """The landmarks of the current film (None before detection)."""
        return self._session(self._view) if self._view else None

    @property
    def cobb_result(self) -> CobbResult | None:
        """The Cobb angles of the current landmarks (None when they cannot be measured)."""
        film = self._film(self._view) if self._view else None
        return self._cobb.get(film.key, (None, None))[0] if film else None

    @property
    def annotation_folder(self) -> Path | None:
        """Where sidecars are kept (None: next to the images)."""
        return self.films.annotation_folder

    @property
    def busy(self) -> bool:
        """True while a detection or an image read is running."""
        return self._detect_worker is not None or self._open_worker is not None

    @property
    def finetune_job(self):
        """The running fine-tuning job, if any."""
        return self._job

    # -- public API (what the buttons and shortcuts call) -------------------------------------

    def detect(self) -> FunctionWorker | None:
        """Run the selected model on the current image in a worker; return the worker."""
        view = self._view
        if view is None:
            self._say("Open a radiograph first (File > Open, or Open… here).", "warning")
            return None
        if self._detect_worker is not None:
            self._say("Detection is already running.")
            return self._detect_worker
        film, data = self._film(view), view.pixels
        if data.ndim != 2 and not view.image.rgb:
            self._say(
                f"“{view.image.name}” is a {data.ndim}-D stack (shape {tuple(data.shape)}); "
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
            detect_landmarks,
            self._cache,
            version.path,
            version.id,
            self._device(),
            data,
            film.spacing,
            on_error=partial(self._worker_failed, "Detection"),
            activity=f"Detecting landmarks on {film.name}",
        )
        worker.returned.connect(partial(self._on_detected, film))
        worker.finished.connect(self._on_detect_finished)
        self._detect_worker = worker
        self.detect_busy.show()
        self._say(f"Detecting landmarks on {film.name} with {version.label}…")
        self._update_controls()
        worker.start()
        return worker

    def toggle_labels(self) -> None:
        """Show or hide the vertebra labels next to the points."""
        self.labels_check.toggle()

    def next_image(self) -> FunctionWorker | None:
        """Open the next image of the folder (the current one is saved first)."""
        return self._step(+1)

    def previous_image(self) -> FunctionWorker | None:
        """Open the previous image of the folder."""
        return self._step(-1)

    def open_path(self, path: str | Path) -> FunctionWorker | None:
        """Open an image file or a folder of images (read in a worker); return the worker."""
        return self._open(Path(path))

    # -- life cycle: hooks on the viewer while the widget is docked ----------------------------

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
        """Release the shortcuts and events, save, and stop fine-tuning (widget removed)."""
        if self._unbind_keys is not None:
            self._unbind_keys()
            self._unbind_keys = None
            for emitter, name in self._hooks():
                emitter.disconnect(getattr(self, name))
            self.autosaver.flush()
        self._stop_finetune()

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

    # -- views and films -----------------------------------------------------------------------

    def _view_of(self, layer: Layer | None) -> FilmLayers | None:
        for view in self._views:
            if layer is not None and layer in (view.image, view.points, view.cobb):
                return view
        return None

    def _film(self, view: FilmLayers) -> Film:
        """The film a view shows (on first sight its sidecar is read, and we say how it went)."""
        meta = view.image.metadata
        path = Path(meta["path"]) if meta.get("path") else None
        spacing = meta.get("spacing")
        film, restored = self.films.film(
            str(path) if path else f"layer-{id(view.image)}",
            path.name if path else view.image.name,
            tuple(int(n) for n in view.pixels.shape[:2]),
            path,
            tuple(spacing) if spacing else None,
            meta.get("spacing_source"),
        )
        if restored is not None and restored.message:
            self._say(restored.message, restored.level)
        return film

    def _session(self, view: FilmLayers) -> LandmarkSession | None:
        return self._film(view).session

    def _attach(self, image: Image) -> FilmLayers:
        """The view of an image layer, created (and its film's landmarks shown) if new."""
        view = self._view_of(image)
        if view is None:
            view = FilmLayers(
                self.viewer, image, lambda: self._on_moving(view), partial(self._on_edited, image)
            )
            self._views.append(view)
        self._view = view
        self._show(view)
        return view

    def _show(self, view: FilmLayers) -> None:
        """Show a view's film: its landmarks (copies), its Cobb lines, the panel."""
        film = self._film(view)
        session = film.session
        if session is None:
            view.clear_points()
        else:
            view.show_points(
                session.positions,
                self._features(session),
                labels=self.labels_check.isChecked(),
                doubtful=not session.is_measurement,
            )
            self._update_cobb(view)
        if view is self._view:
            self._update_controls()
            self._show_angles(*self._angles(film))

    def _features(self, session: LandmarkSession):
        return landmark_features(
            session.names,
            session.source,
            session.visible,
            session.sigma,
            self.review_factor,
            session.model_review,
        )

    def _update_controls(self) -> None:
        view = self._view
        if view is None:
            self._show_controls(ControlState(finetuning=self._job is not None))
            return
        film = self._film(view)
        files, index = view.folder()
        where = f" — {index + 1} of {len(files)}" if len(files) > 1 else ""
        history = film.session.history if film.session else None
        self._show_controls(
            ControlState(
                has_image=True,
                has_points=film.session is not None,
                detecting=self._detect_worker is not None,
                finetuning=self._job is not None,
                undo_label=history.undo_label if history else None,
                redo_label=history.redo_label if history else None,
                image_text=f"{film.name}{where}",
                spacing_text=spacing_text(film.spacing, film.spacing_source),
                can_go_back=len(files) > 1 and index > 0,
                can_go_on=len(files) > 1 and index < len(files) - 1,
            )
        )

    def _on_layer_inserted(self, event: Any) -> None:
        layer = event.value
        if isinstance(layer, Image) and self._view_of(layer) is None:
            # let napari finish adding the layer before we add the landmark layers above it
            self._later(partial(self._attach_if_present, layer))

    def _attach_if_present(self, layer: Image) -> None:
        if layer in self.viewer.layers:
            self._attach(layer)

    def _later(self, call: Callable[[], None]) -> None:
        """Run ``call`` once napari has finished the event being handled."""
        self._pending.append(call)
        QTimer.singleShot(0, self._run_pending)

    def _run_pending(self) -> None:
        calls, self._pending = self._pending, []
        for call in calls:
            call()

    def _worker_failed(self, what: str, text: str) -> None:
        """An error a background job did not expect: in the dock and as a notification."""
        if not self._closed:
            self._say(f"{what} failed: {text}", "error")

    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        view = self._view_of(layer)
        if view is None:
            return
        if layer is view.image:
            self.autosaver.flush()
            self.films.forget(self._film(view))
            self._views.remove(view)
            view.remove()
            if self._view is view:
                self._view = self._views[-1] if self._views else None
                if self._view is not None:
                    self._show(self._view)
                else:
                    self._show_angles(None, None)
        else:
            view.forget(layer)
            if view.points is None:
                self._say(
                    "The landmark layer was removed; the saved annotation is kept. Detect "
                    "again, or reopen the image, to bring the points back."
                )
        self._update_controls()

    def _on_active_layer(self, event: Any) -> None:
        view = self._view_of(event.value)
        if view is not None and view is not self._view:
            self._view = view
            self._update_controls()
            self._show_angles(*self._angles(self._film(view)))

    # -- opening and stepping -------------------------------------------------------------------

    def _step(self, delta: int) -> FunctionWorker | None:
        view = self._view
        files, index = view.folder() if view else ([], 0)
        if len(files) < 2:
            self._say("This image is not part of a folder: open a folder to step through it.")
            return None
        if not 0 <= index + delta < len(files):
            edge = "last" if delta > 0 else "first"
            self._say(f"This is the {edge} image of the folder ({index + 1} of {len(files)}).")
            return None
        self.autosaver.flush()
        return self._open(Path(files[index + delta]), files=files, index=index + delta, into=view)

    def _open(
        self,
        path: Path,
        *,
        files: Sequence[str] | None = None,
        index: int = 0,
        into: FilmLayers | None = None,
    ) -> FunctionWorker | None:
        if self._open_worker is not None:
            self._say("Still opening the previous image…")
            return None
        worker = start_worker(
            read_image_layer,
            path,
            files,
            index,
            on_error=partial(self._worker_failed, f"Opening {path.name}"),
        )
        worker.returned.connect(partial(self._on_opened, into))
        worker.finished.connect(self._on_open_finished)
        self._open_worker = worker
        self._say(f"Opening {path.name}…")
        worker.start()
        return worker

    def _on_open_finished(self) -> None:
        self._open_worker = None

    def _on_opened(self, into: FilmLayers | None, outcome: OpenOutcome) -> None:
        if self._closed:
            return
        if outcome.error or outcome.layer_data is None:
            self._say(outcome.error or f"Cannot open {outcome.path.name}.", "error")
            return
        data, kwargs, _ = outcome.layer_data
        if into is not None and into in self._views:
            into.show_film(data, kwargs)  # the same layers: no remove / add
            self._view = into
            self._show(into)
        else:
            layer = Image(data, **kwargs)
            self.viewer.add_layer(layer)
            into = self._attach(layer)
        self.viewer.reset_view()
        film = self._film(into)
        if into.points is not None and film.session is not None:
            self.viewer.layers.selection.active = into.points
        elif film.blocked is None and film.session is None:
            self._say(f"Opened {film.name}. Detect landmarks when ready.")

    # -- detection -----------------------------------------------------------------------------

    def _on_detect_finished(self) -> None:
        self._detect_worker = None
        if self._closed:
            return
        self.detect_busy.hide()
        self._update_controls()

    def _on_detected(self, film: Film, detection: Detection) -> None:
        if self._closed or film not in self.films:
            return
        pred = detection.prediction
        if detection.error or pred is None:
            self._say(detection.error or "Detection failed.", "error")
            return
        session = film.session
        names = tuple(pred.landmark_names)
        kept = 0
        if session is None:
            film.session = LandmarkSession.from_prediction(
                pred, detection.model_id, detection.doubt
            )
        elif names != session.names:
            self._say(_names_differ(names, session.names), "error")
            return
        else:
            with suppress(DoubtfulDetection):  # said below: the existing points stay
                session.merge_prediction(pred, detection.model_id, detection.doubt)
            kept = session.human_count
        view = next((v for v in self._views if self._film(v) is film), None)
        if view is not None:
            self._show(view)
        if detection.doubt:
            rest = (
                " The points are shown for checking (orange) but are not a measurement and "
                "are not saved: correct them, or press Save to keep them."
                if session is None
                else " Your existing points were left unchanged."
            )
            self._say(detection.doubt + rest, "warning")
        else:
            self._say(self._detected_text(film.session, detection, kept))
            self._write(film, explicit=False)
        if view is not None and view is self._view and view.points is not None:
            self.viewer.layers.selection.active = view.points
        self._update_controls()

    def _detected_text(self, session: LandmarkSession, detection: Detection, kept: int) -> str:
        review = int(self._features(session)["review"].sum())
        parts = [f"Detected {len(session.names)} landmarks in {detection.seconds:.1f} s"]
        if kept:
            parts.append(f"kept your {kept} corrected point{'s' * (kept != 1)}")
        if review:
            parts.append(f"{review} flagged for review (magenta border)")
        return "; ".join(parts) + "."

    # -- saving ---------------------------------------------------------------------------------

    def _on_labels_toggled(self, on: bool) -> None:
        for view in self._views:
            if view.points is not None:
                view.points.text.visible = on

    def _on_review_factor(self, value: float) -> None:
        self.review_factor = float(value)
        for view in self._views:
            session = self._session(view)
            if session is not None:
                view.restyle(self._features(session), not session.is_measurement)


def _on_destroyed(ref: weakref.ref, *_: Any) -> None:
    widget = ref()
    if widget is not None:
        widget._disconnect_viewer()


def _names_differ(model: Sequence[str], saved: Sequence[str]) -> str:
    """Say how a model's landmark names differ from an annotation's (count, or first name)."""
    if len(model) != len(saved):
        what = f"{len(model)} landmarks, but this image's annotation has {len(saved)}"
    else:
        i = next(i for i, (a, b) in enumerate(zip(model, saved, strict=True)) if a != b)
        what = f"landmark {i + 1} as “{model[i]}”, but this image's annotation has “{saved[i]}”"
    return f"The selected model names {what}: choose a matching model."
