"""napari conventions: errors as notifications with the dock hidden, long work in napari's
activity dock, a manifest npe2 validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from napari.utils.notifications import ErrorNotification, notification_manager
from npe2 import PluginManifest

import napari_nfdp
from napari_nfdp.core.localizer import Localizer
from napari_nfdp.ui._napari_shim import open_progress_bars
from tests.ui.conftest import (
    WAIT_MS,
    detect_and_wait,
    open_and_wait,
    wait_idle,
    write_corrections,
    write_spine_folder,
)
from tests.ui.test_finetune import _record_progress
from training.events import Started, Step

MANIFEST = Path(napari_nfdp.__file__).parent / "napari.yaml"


@pytest.fixture
def hidden_dock(make_napari_viewer, registry):
    """The dock widget in a real viewer, its dock hidden: (viewer, dock, widget)."""
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-nfdp", "NFDP landmarks")
    dock.hide()
    return viewer, dock, widget


def _new_bars(before: set) -> list:
    return [bar for bar in open_progress_bars() if bar not in before]


def test_an_unexpected_worker_error_is_a_notification_with_the_dock_hidden(
    hidden_dock, spine_folder, qtbot, monkeypatch
):
    _, dock, widget = hidden_dock
    open_and_wait(qtbot, widget, spine_folder / "film1.png")

    def broken(self, image):
        raise KeyError("feature map")  # not an error the detect path expects

    monkeypatch.setattr(Localizer, "predict", broken)
    before = len(notification_manager.records)
    detect_and_wait(qtbot, widget)
    new = notification_manager.records[before:]
    errors = [n for n in new if str(n.severity).lower() == "error"]
    assert [n.message for n in errors] == ["Detection failed: 'feature map'"]
    assert not any(isinstance(n, ErrorNotification) for n in new)  # no re-raised traceback
    assert not dock.isVisible()
    assert "Detection failed" in widget.status.text() and widget.points_layer is None
    assert widget.detect_button.isEnabled()  # the dock is usable again


def test_detection_shows_a_busy_bar_in_the_activity_dock(widget, spine_folder, qtbot):
    open_and_wait(qtbot, widget, spine_folder / "film1.png")
    before = set(open_progress_bars())
    assert widget.detect() is not None
    (bar,) = _new_bars(before)
    assert bar.total == 0 and "Detecting landmarks on film1.png" in bar.desc
    wait_idle(qtbot, widget)
    qtbot.waitUntil(lambda: bar not in open_progress_bars(), timeout=WAIT_MS)
    assert widget.points_layer is not None


def test_finetune_shows_its_steps_in_the_activity_dock_and_cancel_there_stops_it(
    widget, tmp_path, qtbot, monkeypatch
):
    folder = tmp_path / "corrected"
    write_corrections(write_spine_folder(folder))
    open_and_wait(qtbot, widget, folder)
    widget.finetune_form.epochs.value = 200
    events = _record_progress(widget, monkeypatch)
    before = set(open_progress_bars())
    assert widget.finetune() is not None
    (bar,) = _new_bars(before)
    assert "Fine-tuning v1" in bar.desc
    qtbot.waitUntil(lambda: any(isinstance(e, Step) for e in events), timeout=WAIT_MS)
    started = next(e for e in events if isinstance(e, Started))
    assert started.epochs == 200
    assert bar.total == started.epochs * started.steps_per_epoch and bar.n >= 1
    bar.cancel()  # what the Cancel button of napari's activity dock calls
    qtbot.waitUntil(lambda: widget.finetune_job is None, timeout=WAIT_MS)
    assert "cancelled" in widget.status.text() and widget.registry.selected().id == "v1"
    assert bar not in open_progress_bars()


def test_removing_the_dock_stops_a_finetune_and_closes_its_bar(hidden_dock, tmp_path, qtbot):
    viewer, dock, widget = hidden_dock
    folder = tmp_path / "corrected"
    write_corrections(write_spine_folder(folder))
    open_and_wait(qtbot, widget, folder)
    widget.finetune_form.epochs.value = 200
    before = set(open_progress_bars())
    job = widget.finetune()
    (bar,) = _new_bars(before)
    viewer.window.remove_dock_widget(dock)
    assert job.cancelled and bar not in open_progress_bars()
    qtbot.waitUntil(lambda: widget.finetune_job is None, timeout=WAIT_MS)
    assert widget.registry.selected().id == "v1"


def test_npe2_validates_the_manifest_and_its_imports():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", str(MANIFEST), "--imports"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.visibility == "public"
    assert {str(c) for c in manifest.categories} == {"Annotation", "Measurement", "IO"}
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    writer = next(
        w for w in manifest.contributions.writers if w.command == "napari-nfdp.write_points"
    )
    assert writer.display_name == "NFDP landmark table"
    assert writer.filename_extensions == [".nfdp.csv"]  # napari's own points writer has .csv
    readers = {commands[r.command]: r.filename_patterns for r in manifest.contributions.readers}
    assert readers["napari_nfdp._sidecar_reader:get_sidecar_reader"] == ["*.nfdp.json"]
    assert readers["napari_nfdp._sidecar_reader:get_table_reader"] == ["*.nfdp.csv"]
