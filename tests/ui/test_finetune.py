"""Fine-tune on my annotations: background job, publish only if not worse, cancel."""

from __future__ import annotations

import pytest

import training.finetune
from napari_nfdp.core.checkpoint import load_checkpoint, update_metrics
from napari_nfdp.io.annotations import read_annotation, sidecar_path
from tests.ui.conftest import (
    WAIT_MS,
    detect_and_wait,
    open_and_wait,
    write_corrections,
    write_spine_folder,
)


@pytest.fixture
def corrected(widget, tmp_path, qtbot):
    """A folder of 3 synthetic films whose landmarks a person corrected, opened in the widget."""
    folder = tmp_path / "corrected"
    write_corrections(write_spine_folder(folder))
    open_and_wait(qtbot, widget, folder)
    widget.epochs_spin.setValue(1)
    return widget, folder


def _force_validation(monkeypatch, change_pct: float) -> None:
    """Let the real fine-tune run, then set its validation MRE after = before + change."""
    real = training.finetune.finetune

    def finetune(*args, **kwargs):
        path = real(*args, **kwargs)
        before = load_checkpoint(path).metrics["val_mre_pct_before"]
        update_metrics(path, {"val_mre_pct_after": before + change_pct})
        return path

    monkeypatch.setattr(training.finetune, "finetune", finetune)


def _record_progress(widget, monkeypatch) -> list[dict]:
    """The progress events the widget receives (on the GUI thread)."""
    events: list[dict] = []
    shown = widget._on_finetune_progress

    def record(event: dict) -> None:
        events.append(event)
        shown(event)

    monkeypatch.setattr(widget, "_on_finetune_progress", record)
    return events


def _run(qtbot, widget, monkeypatch):
    events = _record_progress(widget, monkeypatch)
    outcomes = []
    job = widget.finetune()
    assert job is not None, widget.status.text()
    job.finished.connect(outcomes.append)
    assert not widget.finetune_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: widget.finetune_job is None, timeout=WAIT_MS)
    return events, outcomes


def test_finetune_publishes_a_better_model_and_detect_uses_it(corrected, monkeypatch, qtbot):
    widget, folder = corrected
    _force_validation(monkeypatch, -0.5)
    assert widget.model_combo.count() == 2  # bundled default + the tiny model (v1)
    events, outcomes = _run(qtbot, widget, monkeypatch)
    assert any(e["event"] == "epoch" for e in events)  # progress reached the GUI thread
    assert outcomes[0].status == "published" and outcomes[0].n_images == 3
    assert widget.model_combo.count() == 3
    assert widget.model_combo.currentData() == "v2"
    assert (
        "v2" in widget.model_combo.currentText() and "3 images" in widget.model_combo.currentText()
    )
    assert "published v2" in widget.status.text()
    assert widget.registry.selected().parent == "v1"

    detect_and_wait(qtbot, widget)  # the sidecar records the model that ran
    assert read_annotation(sidecar_path(folder / "film1.png")).model == "v2"


def test_finetune_that_got_worse_keeps_the_old_model(corrected, monkeypatch, qtbot):
    widget, folder = corrected
    _force_validation(monkeypatch, +0.5)
    _, outcomes = _run(qtbot, widget, monkeypatch)
    assert outcomes[0].status == "kept"
    assert widget.model_combo.count() == 2 and widget.model_combo.currentData() == "v1"
    assert "got worse" in widget.status.text() and "kept v1" in widget.status.text()
    assert widget.registry.selected().id == "v1"


def test_cancel_stops_a_running_finetune(corrected, monkeypatch, qtbot):
    widget, _ = corrected
    widget.epochs_spin.setValue(200)
    events = _record_progress(widget, monkeypatch)
    widget.finetune()
    qtbot.waitUntil(lambda: any(e["event"] == "step" for e in events), timeout=WAIT_MS)
    assert not widget.finetune_bar.isHidden() and "Epoch" in widget.finetune_bar.format()
    widget.cancel_finetune()
    qtbot.waitUntil(lambda: widget.finetune_job is None, timeout=WAIT_MS)
    assert sum(e["event"] == "epoch" for e in events) < 20
    assert "cancelled" in widget.status.text() and "kept v1" in widget.status.text()
    assert widget.registry.selected().id == "v1" and widget.model_combo.count() == 2
    assert widget.finetune_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_finetune_without_corrections_explains(widget, tmp_path, qtbot):
    folder = tmp_path / "plain"
    write_spine_folder(folder)
    open_and_wait(qtbot, widget, folder)
    widget.finetune()
    qtbot.waitUntil(lambda: widget.finetune_job is None, timeout=WAIT_MS)
    assert "No corrected images" in widget.status.text()
