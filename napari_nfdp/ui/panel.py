"""The dock's controls and texts: buttons, lists, status line, Cobb panel (no decisions here).

:class:`ControlPanel` builds the widgets and shows what it is told: messages (also as napari
notifications, so a hidden dock never hides an error), the Cobb angles, which buttons can be
used. Its buttons call public methods (``detect``, ``save``, ...) that the dock widget, a
subclass, implements.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Qt
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
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from napari_nfdp.core.cobb import CobbResult
from napari_nfdp.core.localizer import REVIEW_SIGMA_FACTOR
from napari_nfdp.io.overlay import CURVE_COLOURS
from napari_nfdp.ui.finetune_form import make_finetune_form
from napari_nfdp.ui.keybinds import shortcut_text

DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")
_LEVEL_COLOURS = {"info": "", "warning": "color: #f0b400;", "error": "color: #ff5a5a;"}


@dataclass(frozen=True)
class ControlState:
    """What the buttons may do now (the dock widget works it out, the panel shows it)."""

    has_image: bool = False
    has_points: bool = False
    detecting: bool = False
    finetuning: bool = False
    undo_label: str | None = None
    redo_label: str | None = None
    image_text: str = "no image"
    spacing_text: str = "—"
    can_go_back: bool = False
    can_go_on: bool = False


class ControlPanel(QWidget):
    """The dock's widgets; subclasses provide the methods the buttons call."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.review_factor = float(REVIEW_SIGMA_FACTOR)
        self._build_controls()

    def _build_controls(self) -> None:
        """Every button, list and label of the dock; the buttons call the public methods."""
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
        self.image_label = _wrapping_label("no image")
        self.previous_button = _button(
            "◀ Previous",
            _tip("Previous image of the folder", "previous_image"),
            self.previous_image,
        )
        self.next_button = _button(
            "Next ▶", _tip("Next image of the folder", "next_image"), self.next_image
        )
        open_button = _button("Open…", "Open a radiograph or a folder", self._choose_path)
        self.folder_label = _wrapping_label("next to the images")
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
        self.spacing_label = _wrapping_label("—")
        self.spacing_label.setToolTip(
            "The pixel spacing (mm per pixel) and the DICOM element it came from; without one "
            "the angles are measured in pixels"
        )
        grid.addWidget(QLabel("Spacing:"), 3, 0)
        grid.addWidget(self.spacing_label, 3, 1, 1, 2)
        layout.addWidget(image_box)

        detect_box = QGroupBox("Landmarks")
        grid = QGridLayout(detect_box)
        self.detect_button = _button(
            "Detect landmarks", _tip("Run the selected model on this image", "detect"), self.detect
        )
        # a still bar, not the animated "busy" one: under software OpenGL every repaint of the
        # window recomposites the canvas, and the animation would slow the detection down
        self.detect_busy = QProgressBar()
        self.detect_busy.setRange(0, 1)
        self.detect_busy.setValue(0)
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
        self.save_label = _wrapping_label()
        self.save_label.setStyleSheet("color: gray;")
        # two lines: the time, then the file name (which may be wider than the dock)
        self.save_label.setMinimumHeight(2 * self.save_label.fontMetrics().lineSpacing() + 4)
        grid.addWidget(self.save_label, 5, 0, 1, 3)
        layout.addWidget(detect_box)

        cobb_box = QGroupBox("Cobb angles")
        cobb_layout = QVBoxLayout(cobb_box)
        self.angles_label = _wrapping_label("—")
        self.angles_label.setTextFormat(Qt.TextFormat.RichText)
        self.angles_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # room for the angles, the curve type and what was left out: the dock never clips them
        self.angles_label.setMinimumHeight(6 * self.angles_label.fontMetrics().lineSpacing() + 6)
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
        self.finetune_form = make_finetune_form()  # magicgui: the fine-tune options
        self.finetune_bar = QProgressBar()
        self.finetune_bar.setTextVisible(True)
        self.finetune_bar.hide()
        self.finetune_label = _wrapping_label()
        grid.addWidget(self.finetune_form.native, 0, 0, 1, 2)
        grid.addWidget(self.finetune_button, 1, 0)
        grid.addWidget(self.cancel_button, 1, 1)
        grid.addWidget(self.finetune_bar, 2, 0, 1, 2)
        grid.addWidget(self.finetune_label, 3, 0, 1, 2)
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
        self.markups_button = _button(
            "Export Slicer markups…",
            "3D Slicer markups of all annotated images of the folder, one <film>.mrk.json each "
            "(landmarks, Cobb lines and angles in LPS mm), into a folder you choose",
            self._choose_markups_folder,
        )
        layout.addWidget(self.markups_button)

        self.status = _wrapping_label("Open a radiograph, then Detect landmarks.")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        layout.addStretch(1)

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

    def _choose_markups_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the 3D Slicer markups")
        if folder:
            self.export_markups(folder)

    def _say(self, text: str, level: str = "info") -> None:
        """Show a message in the status line; warnings and errors also as napari notifications."""
        self.status.setText(text)
        self.status.setStyleSheet(_LEVEL_COLOURS.get(level, ""))
        if level == "error":
            show_error(text)
        elif level == "warning":
            show_warning(text)

    def _show_saved(self, when: str, path: Path) -> None:
        """The save note: the time, then the file's name (breakable, so a narrow dock wraps it
        instead of clipping it); the full path in the tooltip."""
        self.save_label.setText(f"Saved at {when}: {breakable(path.name)}")
        self.save_label.setToolTip(str(path))

    def _show_controls(self, state: ControlState) -> None:
        """Enable the buttons that can be used now and show the image's place in its folder."""
        self.detect_button.setEnabled(state.has_image and not state.detecting)
        for button in (self.reset_button, self.reset_all_button, self.hide_button):
            button.setEnabled(state.has_points)
        self.save_button.setEnabled(state.has_points)
        self.undo_button.setEnabled(state.undo_label is not None)
        self.redo_button.setEnabled(state.redo_label is not None)
        self.undo_button.setToolTip(_tip(f"Undo {state.undo_label or ''}".strip(), "undo"))
        self.redo_button.setToolTip(_tip(f"Redo {state.redo_label or ''}".strip(), "redo"))
        self.previous_button.setEnabled(state.can_go_back)
        self.next_button.setEnabled(state.can_go_on)
        self.image_label.setText(state.image_text)
        self.spacing_label.setText(state.spacing_text)
        self.finetune_button.setEnabled(not state.finetuning)
        self.cancel_button.setEnabled(state.finetuning)
        for control in (self.model_combo, self.add_button, self.rollback_button):
            control.setEnabled(not state.finetuning)  # the job publishes into the registry

    def _show_angles(self, result: CobbResult | None, note: str | None) -> None:
        """The Cobb panel: the angles, or why there are none (``note``), or a dash."""
        if result is not None:
            self.angles_label.setText(angles_html(result))
        else:
            self.angles_label.setText(html.escape(note or "—"))


def spacing_text(spacing: tuple[float, float] | None, source: str | None) -> str:
    """The dock's spacing line: "0.143 × 0.143 mm/pixel (PixelSpacing)", or that there is
    none."""
    if not spacing:
        return "none: angles in pixels"
    where = f" ({source})" if source else ""
    return f"{spacing[0]:.4g} × {spacing[1]:.4g} mm/pixel{where}"


def breakable(text: str) -> str:
    """``text`` with zero-width spaces after . _ - / so that a label can wrap long names."""
    for mark in "._-/":
        text = text.replace(mark, mark + "\u200b")
    return text


def _wrapping_label(text: str = "") -> QLabel:
    """A label that wraps long text instead of widening the dock."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(0)
    return label


def _button(text: str, tip: str, slot: Callable[[], Any]) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(lambda _checked=False: slot())
    return button


def _tip(text: str, action: str) -> str:
    key = shortcut_text(action)
    return f"{text} ({key})" if key else text


def angles_html(result: CobbResult) -> str:
    """The Cobb panel's rich text: one coloured line per curve (main in bold), the curve type."""
    lines = []
    for curve in result.curves:
        colour = "#{:02x}{:02x}{:02x}".format(*CURVE_COLOURS.get(curve.name, (255, 255, 255)))
        text = html.escape(result.describe(curve.name))
        weight = "bold" if curve.name == result.main else "normal"
        style = "" if curve.measured else "; font-style:italic"
        lines.append(f'<span style="color:{colour}; font-weight:{weight}{style}">{text}</span>')
    shape = "S-shaped (two curves)" if result.curve_type == "S" else "C-shaped (one curve)"
    lines.append(f"Curve type: {result.curve_type} — {shape}")
    if result.left_out:
        from napari_nfdp.core.schema import SPINE_VERTEBRAE

        names = ", ".join(SPINE_VERTEBRAE[v] for v in result.left_out)
        lines.append(html.escape(f"Left out (a corner not visible): {names}"))
    return "<br>".join(lines)
