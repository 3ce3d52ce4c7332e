"""The model picker: registry versions, adding a checkpoint file, rollback, device choice."""

from __future__ import annotations

import pytest
import torch

from tests.ui.conftest import WAIT_MS, detect_and_wait, open_and_wait


def _choose(widget, version_id: str) -> None:
    """Pick a version in the combo box as a person does (the activated signal)."""
    index = widget.model_combo.findData(version_id)
    widget.model_combo.setCurrentIndex(index)
    widget.model_combo.activated.emit(index)


def test_versions_listed_added_chosen_and_rolled_back(widget, tiny_model, tmp_path, qtbot):
    combo = widget.model_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["bundled", "v1"]
    assert combo.currentData() == "v1" and "tiny test model" in combo.currentText()

    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"garbage")
    widget.add_checkpoint(bad)
    qtbot.waitUntil(lambda: "Cannot use not_a_model.pt" in widget.status.text(), timeout=WAIT_MS)
    assert combo.count() == 2

    widget.add_checkpoint(tiny_model)
    qtbot.waitUntil(lambda: combo.count() == 3, timeout=WAIT_MS)
    assert combo.currentData() == "v2" and widget.registry.selected().id == "v2"

    _choose(widget, "v1")
    assert widget.registry.selected().id == "v1"
    assert "Detect now uses v1" in widget.status.text()

    widget.rollback()
    assert combo.currentData() == "bundled" and widget.registry.selected().id == "bundled"
    widget.rollback()
    assert "nothing to roll back to" in widget.status.text()


def test_missing_bundled_model_is_explained(widget, spine_folder, qtbot, monkeypatch):
    import napari_nfdp.core.registry as registry_module

    monkeypatch.setattr(registry_module, "DEFAULT_MODEL_PATH", spine_folder / "absent.pt")
    widget._refresh_models()
    assert "(file missing)" in widget.model_combo.itemText(0)
    _choose(widget, "bundled")
    open_and_wait(qtbot, widget, spine_folder)
    detect_and_wait(qtbot, widget)
    assert "The model could not be loaded" in widget.status.text()
    assert widget.points_layer is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_cuda_without_a_gpu_says_so(widget, spine_folder, qtbot):
    open_and_wait(qtbot, widget, spine_folder)
    widget.device_combo.setCurrentText("cuda")
    detect_and_wait(qtbot, widget)
    assert "CUDA is not available" in widget.status.text()
    widget.device_combo.setCurrentText("cpu")
    detect_and_wait(qtbot, widget)
    assert widget.points_layer is not None


def test_a_tampered_model_file_is_refused_and_the_picker_stays_usable(widget, spine_folder, qtbot):
    version = widget.registry.selected()
    data = bytearray(version.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    version.path.write_bytes(bytes(data))
    widget._refresh_models()
    combo = widget.model_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["bundled", "v1"]
    open_and_wait(qtbot, widget, spine_folder)
    assert widget.detect() is None
    assert "changed on disk" in widget.status.text() and version.path.name in widget.status.text()
    assert widget.points_layer is None
    _choose(widget, "bundled")  # another version can still be picked
    detect_and_wait(qtbot, widget)
    assert widget.points_layer is not None
