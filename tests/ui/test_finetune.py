"""Fine-tune on my annotations: background job, publish only if not worse, cancel."""

from __future__ import annotations

import logging

import pytest

import training.finetune
from napari_nfdp.core.checkpoint import load_checkpoint, update_metrics
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.annotations import Annotation, read_annotation, sidecar_path, write_annotation
from napari_nfdp.simulator import synthesize_spine
from tests.conftest import SMALL_SHAPE
from tests.ui.conftest import (
    WAIT_MS,
    detect_and_wait,
    open_and_wait,
    write_corrections,
    write_spine_folder,
)
from training.events import Baseline, Done, EpochDone, Loading, Started, Step


@pytest.fixture
def corrected(widget, tmp_path, qtbot):
    """A folder of 3 synthetic films whose landmarks a person corrected, opened in the widget."""
    folder = tmp_path / "corrected"
    write_corrections(write_spine_folder(folder))
    open_and_wait(qtbot, widget, folder)
    widget.finetune_form.epochs.value = 1
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


def _record_progress(widget, monkeypatch) -> list[object]:
    """The progress events the widget receives (on the GUI thread)."""
    events: list[object] = []
    shown = widget._on_finetune_progress

    def record(event: object) -> None:
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
    # typed progress events reached the GUI thread, in order
    kinds = [type(e) for e in events]
    assert kinds[:3] == [Loading] * 3 and kinds[3] is Baseline
    assert {Baseline, Started, Step, EpochDone, Done} <= set(kinds)
    assert kinds[-1] is Done
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
    widget.finetune_form.epochs.value = 200
    events = _record_progress(widget, monkeypatch)
    widget.finetune()
    qtbot.waitUntil(lambda: any(isinstance(e, Step) for e in events), timeout=WAIT_MS)
    assert not widget.finetune_bar.isHidden() and "Epoch" in widget.finetune_bar.format()
    widget.cancel_finetune()
    qtbot.waitUntil(lambda: widget.finetune_job is None, timeout=WAIT_MS)
    assert sum(isinstance(e, EpochDone) for e in events) < 20
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


def test_finetune_uses_only_human_corrections_and_skips_bad_sidecars(
    widget, tmp_path, monkeypatch, qtbot
):
    """Model output nobody touched is not learnt from; a broken sidecar is named, not fatal."""
    folder = tmp_path / "mixed"
    films = write_spine_folder(folder, seeds=(101, 102, 103, 104, 105))
    write_corrections(films[:3], seeds=(101, 102, 103))
    case = synthesize_spine(104, shape=SMALL_SHAPE)
    write_annotation(
        sidecar_path(films[3]),
        Annotation(
            image_name=films[3].name,
            image_shape=case.image.shape,
            landmark_names=SPINE_LANDMARK_NAMES,
            points=case.landmarks,
            source=["model"] * len(SPINE_LANDMARK_NAMES),
        ),
    )
    sidecar_path(films[4]).write_text('{"a":' * 5000)
    open_and_wait(qtbot, widget, folder)
    widget.finetune_form.epochs.value = 1
    _force_validation(monkeypatch, -0.5)
    _, outcomes = _run(qtbot, widget, monkeypatch)
    assert outcomes[0].status == "published", outcomes[0].message
    assert outcomes[0].n_images == 3 and widget.registry.selected().n_images == 3
    assert "skipped film5.png.nfdp.json" in outcomes[0].message
    assert "film4" not in outcomes[0].message


def test_failed_finetune_logs_the_traceback(corrected, monkeypatch, qtbot, caplog):
    widget, _ = corrected

    def broken(*args, **kwargs):
        raise RuntimeError("the accelerator fell over")

    monkeypatch.setattr(training.finetune, "finetune", broken)
    with caplog.at_level(logging.ERROR):
        _, outcomes = _run(qtbot, widget, monkeypatch)
    assert outcomes[0].status == "failed"
    assert "the accelerator fell over" in widget.status.text()
    logged = [r for r in caplog.records if r.name == "training.finetune" and r.exc_info]
    assert logged and "the accelerator fell over" in str(logged[0].exc_info[1])
    assert widget.registry.selected().id == "v1"


def test_job_logs_an_error_outside_the_shared_path(corrected, monkeypatch, qtbot, caplog):
    widget, _ = corrected

    def broken(*args, **kwargs):
        raise ImportError("training is not installed")

    monkeypatch.setattr(training.finetune, "finetune_and_publish", broken)
    with caplog.at_level(logging.ERROR):
        _, outcomes = _run(qtbot, widget, monkeypatch)
    assert outcomes[0].status == "failed" and "not installed" in outcomes[0].message
    assert any(r.name == "napari_nfdp.ui.jobs" and r.exc_info for r in caplog.records)
