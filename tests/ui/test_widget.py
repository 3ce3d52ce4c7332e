"""The dock widget in a real napari viewer: detect, edit with live Cobb angles, save, reopen."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_nfdp.core.cobb import cobb_angles
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.annotations import read_annotation, sidecar_path
from napari_nfdp.ui.keybinds import SHORTCUTS
from tests.ui.conftest import (
    detect_and_wait,
    open_and_wait,
    truth,
    wait_idle,
    write_corrections,
)

K = len(SPINE_LANDMARK_NAMES)


@pytest.fixture
def detected(widget, spine_folder, qtbot):
    """The widget with film1 of the folder open and its landmarks detected."""
    open_and_wait(qtbot, widget, spine_folder)
    detect_and_wait(qtbot, widget)
    assert widget.points_layer is not None, widget.status.text()
    return widget


def _move(layer, index: int, shift: tuple[float, float]) -> np.ndarray:
    data = layer.data.copy()
    data[index] += shift
    layer.data = data
    return data


def test_detect_gives_68_points_and_cobb_shapes(detected, spine_folder):
    widget = detected
    layer = widget.points_layer
    assert layer.data.shape == (K, 2)
    features = layer.features
    for column in ("name", "vertebra", "corner", "sigma", "source", "visible"):
        assert column in features.columns
    assert list(features["name"]) == list(SPINE_LANDMARK_NAMES)
    assert features["vertebra"].iloc[0] == "T1" and features["corner"].iloc[-1] == "bottom-right"
    assert set(features["source"]) == {"model"} and features["visible"].all()
    assert (features["sigma"] > 0).all()
    # the points sit over the image, roughly where the true spine is
    error = np.hypot(*(layer.data - truth(101)).T).mean()
    assert error < 0.15 * widget.image_layer.data.shape[0], error
    assert widget.cobb_layer.nshapes == 6
    assert set(widget.cobb_layer.shape_type) == {"line"}
    text = widget.angles_label.text()
    for name in ("PT", "MT", "TL"):
        assert f"{name} " in text and " deg, " in text
    assert "Curve type" in text
    # autosaved next to the image
    saved = read_annotation(sidecar_path(spine_folder / "film1.png"))
    assert saved.source == ["model"] * K and saved.model == "v1"
    np.testing.assert_allclose(saved.points, layer.data)


def test_moving_a_point_updates_angles_and_undo_redo(detected):
    widget = detected
    layer = widget.points_layer
    before = layer.data.copy()
    angles_before = widget.angles_label.text()
    mt = widget.cobb_result.curve("MT")
    index = 4 * mt.upper  # top-left corner of the MT upper end vertebra: tilts its line
    moved = _move(layer, index, (8.0, 0.0))
    expected = cobb_angles(moved, widget.image_layer.data.shape[0])
    assert widget.cobb_result.mt == pytest.approx(expected.mt)
    assert widget.angles_label.text() != angles_before
    assert layer.features["source"].iloc[index] == "human"
    assert (layer.features["source"] == "human").sum() == 1

    widget.undo()
    np.testing.assert_array_equal(layer.data, before)
    assert layer.features["source"].iloc[index] == "model"
    assert widget.angles_label.text() == angles_before

    widget.redo()
    np.testing.assert_array_equal(layer.data, moved)
    assert layer.features["source"].iloc[index] == "human"


def test_drag_updates_cobb_live_before_release(detected):
    """A mouse drag moves points in place and only redraws; the overlay must follow anyway."""
    widget = detected
    layer = widget.points_layer
    lines_before = [line.copy() for line in widget.cobb_layer.data]
    index = 4 * widget.cobb_result.curve("MT").upper
    with layer.events.data.blocker():  # what napari does while the mouse button is down
        layer.data[index] += (10.0, 0.0)
        layer.refresh()
    assert any(
        not np.allclose(a, b) for a, b in zip(widget.cobb_layer.data, lines_before, strict=True)
    )
    assert not widget.undo_button.isEnabled()  # nothing committed before the release


def test_added_or_deleted_points_are_put_back(detected, qtbot):
    widget = detected
    layer = widget.points_layer
    before = layer.data.copy()
    layer.selected_data = {3}
    layer.remove_selected()
    qtbot.waitUntil(lambda: len(layer.data) == K)
    np.testing.assert_array_equal(layer.data, before)
    assert "cannot be added or deleted" in widget.status.text()


def test_redetect_keeps_human_points_and_reset(detected, qtbot):
    widget = detected
    layer = widget.points_layer
    model = layer.data.copy()
    _move(layer, 10, (5.0, -3.0))
    moved = layer.data[10].copy()
    detect_and_wait(qtbot, widget)
    np.testing.assert_array_equal(layer.data[10], moved)
    assert layer.features["source"].iloc[10] == "human"
    assert "kept your 1 corrected point" in widget.status.text()

    widget.reset_point(10)
    np.testing.assert_allclose(layer.data[10], model[10])
    assert layer.features["source"].iloc[10] == "model"

    _move(layer, 20, (4.0, 4.0))
    widget.toggle_visible(30)
    assert not layer.features["visible"].iloc[30]
    widget.reset_all()
    np.testing.assert_allclose(layer.data, model)
    assert set(layer.features["source"]) == {"model"} and layer.features["visible"].all()
    widget.undo()
    assert layer.features["source"].iloc[20] == "human"
    assert not layer.features["visible"].iloc[30]


def test_save_close_and_reopen_restore_points_and_sources(detected, spine_folder, qtbot):
    widget = detected
    layer = widget.points_layer
    _move(layer, 5, (3.0, 2.0))
    widget.toggle_visible(40)
    expected = layer.data.copy()
    path = widget.save()
    assert path == sidecar_path(spine_folder / "film1.png")
    # the time first, then the name, breakable (zero-width spaces) so a narrow dock wraps it
    label = widget.save_label.text()
    assert label.startswith("Saved at ") and label.replace("\u200b", "").endswith(path.name)
    raw = json.loads(path.read_text())
    assert raw["points"][40] == [None, None]  # not visible -> NaN -> null
    assert raw["source"][5] == "human" and raw["source"][40] == "human"

    widget.viewer.layers.clear()
    assert widget.points_layer is None
    open_and_wait(qtbot, widget, spine_folder / "film1.png")
    restored = widget.points_layer
    assert restored is not None, widget.status.text()
    visible = np.arange(K) != 40
    np.testing.assert_allclose(restored.data[visible], expected[visible])
    assert restored.features["source"].iloc[5] == "human"
    assert not restored.features["visible"].iloc[40]
    assert "Restored 68 landmarks" in widget.status.text()
    # a hidden corner: its vertebra (T11) is left out, the others still give angles ...
    assert widget.cobb_result is not None and widget.cobb_result.left_out == (10,)
    assert "Left out (a corner not visible): T11" in widget.angles_label.text()  # ... it says so
    widget.toggle_visible(40)
    assert widget.cobb_result.left_out == ()


def test_folder_stepping_saves_and_restores(detected, spine_folder, qtbot):
    widget = detected
    assert "film1.png — 1 of 3" in widget.image_label.text()
    assert not widget.previous_button.isEnabled()
    _move(widget.points_layer, 0, (2.0, 2.0))
    widget.next_image()
    wait_idle(qtbot, widget)
    assert "film2.png — 2 of 3" in widget.image_label.text()
    assert widget.points_layer is None  # film2 has no annotation yet
    assert len([layer for layer in widget.viewer.layers if "film1" in layer.name]) == 0
    widget.previous_image()
    wait_idle(qtbot, widget)
    assert widget.points_layer is not None
    assert widget.points_layer.features["source"].iloc[0] == "human"
    widget.previous_image()
    assert "first image" in widget.status.text()


def test_exports(detected, spine_folder, tmp_path, qtbot):
    widget = detected
    widget.next_image()
    wait_idle(qtbot, widget)
    detect_and_wait(qtbot, widget)
    landmarks = widget.export_landmarks_csv(tmp_path / "out" / "landmarks.csv")
    with landmarks.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * K
    assert {r["image"] for r in rows} == {"film1.png", "film2.png"}
    report = widget.export_cobb_report(tmp_path / "report.csv")
    with report.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == ["film1.png", "film2.png"]
    assert all(r["status"] == "ok" and float(r["MT"]) >= 0 for r in rows)
    assert all("-" in r["MT_ends"] for r in rows)


def test_shortcuts_call_the_widget(detected):
    widget = detected
    layer = widget.points_layer
    before = layer.data.copy()
    _move(layer, 7, (3.0, 0.0))
    keymap = {str(k): v for k, v in widget.viewer.keymap.items()}
    undo = next(s for s in SHORTCUTS if s.action == "undo")
    handler = next(v for k, v in keymap.items() if k in ("Ctrl+Z", "Control-Z", "⌃Z", "Ctrl-Z"))
    assert handler.__doc__ == undo.description
    handler(widget.viewer)
    np.testing.assert_array_equal(layer.data, before)


def test_plugin_widget_and_napari_open_restore_annotations(
    make_napari_viewer, registry, spine_folder, qtbot
):
    from napari_nfdp.ui.widget import NFDPWidget

    write_corrections([spine_folder / "film1.png"], seeds=(101,))
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-nfdp", "NFDP landmarks")
    assert isinstance(widget, NFDPWidget) and widget.viewer == viewer  # a public-only proxy
    viewer.open(str(spine_folder), plugin="napari-nfdp")  # File > Open on a folder
    qtbot.waitUntil(lambda: widget.points_layer is not None)
    assert set(widget.points_layer.features["source"]) == {"human"}
    np.testing.assert_allclose(widget.points_layer.data, truth(101))
    assert "1 of 3" in widget.image_label.text()
    assert widget.cobb_result is not None

    keys = {str(k) for k in viewer.keymap}
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: len({str(k) for k in viewer.keymap}) < len(keys))
