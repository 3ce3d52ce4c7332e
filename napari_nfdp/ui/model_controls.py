"""The Model and Fine-tune parts of the dock: the model list, adding and rolling back
versions, and the fine-tuning job with its progress (in the dock and in napari's activity
dock, where Cancel stops it too).

:class:`ModelControls` is a base of the dock widget; it works on the registry (``registry``),
the panel's controls and the widget's ``_known_images`` / ``_say`` / ``_update_controls`` /
``_worker_failed``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from napari.qt.threading import FunctionWorker
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_nfdp.core.registry import ModelRegistry, ModelVersion, RegistryError
from napari_nfdp.ui.activity import ActivityBar
from napari_nfdp.ui.autosave import Autosaver
from napari_nfdp.ui.finetune_form import finetune_options
from napari_nfdp.ui.jobs import FinetuneJob, FinetuneOutcome, start_worker
from napari_nfdp.ui.panel import ControlPanel


class ModelControls(ControlPanel):
    """The model list and the fine-tuning job of the dock (see the module docstring)."""

    registry: ModelRegistry
    _job: FinetuneJob | None
    _steps: int = 1  # fine-tuning steps per epoch, for the progress bar
    _activity: ActivityBar | None = None  # the fine-tune's bar in napari's activity dock
    autosaver: Autosaver

    def finetune(self) -> FinetuneJob | None:
        """Fine-tune the selected model on the saved, corrected images in the background."""
        if self._job is not None:
            self._say("Fine-tuning is already running; Cancel stops it.")
            return self._job
        self.autosaver.flush()  # the latest corrections are on disk before the job reads them
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
            **finetune_options(self.finetune_form),
            device=self._device(),
            parent=self,
        )
        job.progress.connect(self._on_finetune_progress)
        job.finished.connect(self._on_finetune_finished)
        self._job = job
        self.finetune_bar.setRange(0, 0)
        self.finetune_bar.setFormat("Collecting corrected images…")
        self.finetune_bar.show()
        self._activity = ActivityBar(f"Fine-tuning {base.label}", cancelable=True)
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

    def _stop_finetune(self) -> None:
        """The dock is going away: stop a running fine-tune and close its activity bar."""
        if self._job is not None:
            self._job.cancel()
        if self._activity is not None:
            self._activity.close()

    def add_checkpoint(self, path: str | Path) -> FunctionWorker:
        """Validate and copy a checkpoint file into the model list (in a worker) and select it."""
        path = Path(path)
        worker = start_worker(
            _add_checkpoint,
            self.registry,
            path,
            on_error=partial(self._worker_failed, f"Adding {path.name}"),
        )
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

    def _refresh_models(self) -> None:
        self.model_combo.clear()
        try:
            versions = self.registry.versions()
            selected = self.registry.selected_id()  # unchecked: a bad file stays pickable
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

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a model checkpoint", "", "Checkpoints (*.pt *.pth);;All files (*)"
        )
        if path:
            self.add_checkpoint(path)

    def _on_finetune_progress(self, event: object) -> None:
        """Show one :mod:`training.events` progress event of a running fine-tune."""
        from training.events import Baseline, EpochDone, Loading, Started, Step

        job, activity = self._job, self._activity
        cancel_pressed = activity is not None and activity.cancel_requested  # activity dock
        if job is not None and cancel_pressed and not job.cancelled:
            self.cancel_finetune()
        bar = self.finetune_bar
        phase = None  # what the activity dock says (changes seldom: each change redraws)
        if isinstance(event, Loading):
            bar.setRange(0, event.total)
            bar.setValue(event.index)
            bar.setFormat("Reading corrected images %v/%m")
            phase = "reading corrected images"
        elif isinstance(event, Baseline):
            self.finetune_label.setText(
                f"Validation MRE before: {event.val_mre_pct:.2f} % of the image height "
                f"({event.holdout_images} held-out image(s))."
            )
        elif isinstance(event, Started):
            self._steps = max(1, event.steps_per_epoch)
            bar.setRange(0, event.epochs * self._steps)
            bar.setValue(0)
            stage = f" stage {event.stage}" if event.stage > 1 else ""
            bar.setFormat(f"Training{stage}…")
            phase = f"{event.epochs} epoch(s){stage and ' of' + stage}"
        elif isinstance(event, Step):
            bar.setValue((event.epoch - 1) * self._steps + event.step)
            bar.setFormat(f"Epoch {event.epoch} · loss {event.loss:.3g}")
        elif isinstance(event, EpochDone):
            bar.setFormat(
                f"Epoch {event.epoch}/{event.epochs} · loss {event.loss:.3g} · "
                f"val MRE {event.val_mre_pct:.2f} %"
            )
            phase = f"epoch {event.epoch}/{event.epochs} done"
        if activity is not None:  # last: napari's redraw may run the job's end
            label = job.base.label if job is not None else ""
            activity.show(
                max(0, bar.value()), bar.maximum(), phase and f"Fine-tuning {label}: {phase}"
            )

    def _on_finetune_finished(self, outcome: FinetuneOutcome) -> None:
        self._job = None
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        self.finetune_bar.hide()
        self._refresh_models()
        self.finetune_label.setText(outcome.message)
        level = {"published": "info", "cancelled": "info", "kept": "warning"}.get(
            outcome.status, "error"
        )
        self._say(outcome.message, level)
        self._update_controls()


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
