"""The clinician's loop through the real viewer and the real mouse: drag, undo, autosave,
re-detect, reopen; stepping a folder many times under Mesa; implausible films; units; layout."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_nfdp.core import detection
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.annotations import read_annotation, sidecar_path
from napari_nfdp.simulator import synthesize_spine
from napari_nfdp.ui.autosave import AUTOSAVE_DELAY_MS
from tests.conftest import SMALL_SHAPE
from tests.ui.conftest import detect_and_wait, open_and_wait, wait_idle, write_spine_folder
from tests.ui.mouse import drag_point

K = len(SPINE_LANDMARK_NAMES)


def _wait_saved(qtbot, path, check) -> None:
    """Wait for the debounced autosave to write a file that passes ``check``."""

    def ok() -> bool:
        return path.is_file() and check(read_annotation(path))

    qtbot.waitUntil(ok, timeout=AUTOSAVE_DELAY_MS * 20)


@pytest.fixture
def shown(make_widget, spine_folder, qtbot):
    """A shown viewer with film1 of the folder open and detected (rendered through Mesa)."""
    widget = make_widget(show=True)
    open_and_wait(qtbot, widget, spine_folder / "film1.png")
    detect_and_wait(qtbot, widget)
    assert widget.points_layer is not None, widget.status.text()
    return widget


def test_a_mouse_drag_is_a_human_correction(shown, spine_folder, qtbot):
    widget, film = shown, spine_folder / "film1.png"
    layer, viewer = widget.points_layer, widget.viewer
    mt = widget.cobb_result.curve("MT")
    index = 4 * mt.upper  # a corner of an end vertebra: the angle must change
    start = layer.data[index].copy()
    target = start + (6.0, 3.0)
    angle_before = widget.cobb_result.mt
    assert not widget.undo_button.isEnabled()

    drag_point(viewer, layer, index, target, qtbot=qtbot)

    np.testing.assert_allclose(layer.data[index], target, atol=1.0)
    assert layer.features["source"].iloc[index] == "human"
    assert (layer.features["source"] == "human").sum() == 1
    assert widget.session.source[index] == "human"
    np.testing.assert_allclose(widget.session.positions[index], layer.data[index])
    assert widget.cobb_result.mt != pytest.approx(angle_before)
    assert widget.undo_button.isEnabled()
    # autosaved (debounced, after the release)
    sidecar = sidecar_path(film)
    _wait_saved(qtbot, sidecar, lambda ann: ann.source[index] == "human")
    np.testing.assert_allclose(read_annotation(sidecar).points[index], layer.data[index])

    # re-detect keeps the person's point, reopening restores it
    moved = layer.data[index].copy()
    detect_and_wait(qtbot, widget)
    np.testing.assert_allclose(widget.points_layer.data[index], moved)
    assert "kept your 1 corrected point" in widget.status.text()
    widget.viewer.layers.clear()
    open_and_wait(qtbot, widget, film)
    np.testing.assert_allclose(widget.points_layer.data[index], moved)
    assert widget.points_layer.features["source"].iloc[index] == "human"


def test_undo_redo_of_a_drag_and_the_file_on_disk(shown, spine_folder, qtbot):
    widget, film = shown, spine_folder / "film1.png"
    layer = widget.points_layer
    start = layer.data[9].copy()
    drag_point(widget.viewer, layer, 9, start + (-5.0, 4.0), qtbot=qtbot)
    moved = layer.data[9].copy()
    assert not np.allclose(moved, start)
    widget.undo()
    np.testing.assert_allclose(layer.data[9], start)
    assert layer.features["source"].iloc[9] == "model"
    _wait_saved(qtbot, sidecar_path(film), lambda ann: ann.source[9] == "model")
    widget.redo()
    np.testing.assert_allclose(layer.data[9], moved)
    _wait_saved(qtbot, sidecar_path(film), lambda ann: ann.source[9] == "human")
    assert "Redid move T3-top-right" in widget.status.text()


def test_stepping_25_cycles_reuses_the_layers(make_widget, tmp_path, qtbot):
    """Detect + Next / Previous over 4 films, rendered through Mesa: the process survives,
    the layers are the same objects throughout, and each film shows its own points again."""
    seeds = (101, 102, 103, 104)
    folder = tmp_path / "four"
    write_spine_folder(folder, seeds)
    widget = make_widget(show=True)
    open_and_wait(qtbot, widget, folder)
    layers = None
    seen: dict[str, np.ndarray] = {}
    direction = +1
    for cycle in range(25):
        name = widget.image_layer.metadata["path"]
        if name not in seen:
            detect_and_wait(qtbot, widget)
            seen[name] = widget.points_layer.data.copy()
        else:
            np.testing.assert_allclose(widget.points_layer.data, seen[name])
        if layers is None:
            layers = (widget.image_layer, widget.points_layer, widget.cobb_layer)
        assert (widget.image_layer, widget.points_layer, widget.cobb_layer) == layers
        assert len(widget.viewer.layers) == 3
        index = widget.image_layer.metadata["nfdp_index"]
        if not 0 <= index + direction < len(seeds):
            direction = -direction
        (widget.next_image if direction > 0 else widget.previous_image)()
        wait_idle(qtbot, widget)
        qtbot.wait(10)  # let the canvas draw
        assert widget.image_layer.metadata["nfdp_index"] == index + direction, cycle
    assert len(seen) == 4
    assert len({round(float(points.sum()), 3) for points in seen.values()}) == 4
    for path in seen:
        assert sidecar_path(path).is_file()


def test_a_film_without_points_shows_none_when_stepped_to(widget, spine_folder, qtbot):
    open_and_wait(qtbot, widget, spine_folder)
    detect_and_wait(qtbot, widget)
    widget.next_image()
    wait_idle(qtbot, widget)
    assert widget.points_layer is None  # film2 has no landmarks yet
    assert widget.cobb_result is None and widget.angles_label.text() == "—"
    widget.previous_image()
    wait_idle(qtbot, widget)
    assert widget.points_layer is not None and len(widget.points_layer.data) == K


def test_implausible_detection_shows_no_angles(widget, spine_folder, qtbot, monkeypatch):
    film = spine_folder / "film1.png"
    open_and_wait(qtbot, widget, film)
    monkeypatch.setattr(detection, "NO_SPINE_SIGMA_FACTOR", 1e-6)  # every film looks doubtful
    detect_and_wait(qtbot, widget)
    assert widget.points_layer is not None
    assert widget.cobb_result is None and widget.cobb_layer.nshapes == 0
    assert "No Cobb angles: No spine found?" in widget.angles_label.text()
    borders = widget.points_layer.border_color
    np.testing.assert_allclose(borders, np.tile([1.0, 0.55, 0.0, 1.0], (K, 1)))  # orange
    assert not sidecar_path(film).exists()
    assert widget.export_cobb_report(spine_folder / "report.csv") is None  # nothing measured
    widget.save()  # the person keeps it: now it is theirs, and measured
    assert sidecar_path(film).exists() and widget.cobb_result is not None


def test_a_new_model_replaces_model_points_but_not_human_ones(
    widget, spine_folder, qtbot, tiny_model
):
    open_and_wait(qtbot, widget, spine_folder / "film1.png")
    detect_and_wait(qtbot, widget)
    first = widget.points_layer.data.copy()
    moved = first.copy()
    moved[3] += (4.0, 4.0)
    widget.points_layer.data = moved
    widget.registry.add_file(_shifted_model(tiny_model, spine_folder.parent), note="shifted")
    widget._refresh_models()
    detect_and_wait(qtbot, widget)
    second = widget.points_layer.data
    np.testing.assert_allclose(second[3], moved[3])  # the person's point stays
    others = np.arange(K) != 3
    assert np.abs(second[others] - first[others]).max() > 1.0  # the new model's points
    assert widget.session.model_id == "v2"
    widget.rollback()
    detect_and_wait(qtbot, widget)
    np.testing.assert_allclose(widget.points_layer.data[others], first[others], atol=1e-6)
    assert widget.session.model_id == "v1"


def _shifted_model(path, folder):
    """A copy of a checkpoint whose predictions move (its last layer's bias nudged)."""
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["model_state"]["head.mu.bias"] += 0.05  # every landmark moves by 5 % of the input
    out = folder / "shifted.pt"
    torch.save(blob, out)
    return out


def test_dicom_spacing_gives_physical_units_and_csv_columns(widget, tmp_path, qtbot):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    case = synthesize_spine(101, shape=SMALL_SHAPE)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "film.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.PhotometricInterpretation = "CR", "MONOCHROME2"
    ds.Rows, ds.Columns = SMALL_SHAPE
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.2, 0.4]  # non-square pixels
    ds.PixelData = case.image.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)

    open_and_wait(qtbot, widget, path)
    detect_and_wait(qtbot, widget)
    image, points = widget.image_layer, widget.points_layer
    assert tuple(points.scale) == tuple(image.scale) == (0.2, 0.4)
    assert points.units == image.units == widget.cobb_layer.units
    assert widget.viewer.layers.extent.units is not None  # no "Inconsistent units"
    expected = detection.measure_cobb(
        widget.session.points(), SPINE_LANDMARK_NAMES, SMALL_SHAPE[0], (0.2, 0.4)
    )[0]
    assert widget.cobb_result.mt == pytest.approx(expected.mt)
    rows = list(csv.DictReader(widget.export_landmarks_csv(tmp_path / "l.csv").open()))
    assert float(rows[0]["row_mm"]) == pytest.approx(0.2 * float(rows[0]["row"]), abs=1e-3)
    assert float(rows[0]["col_mm"]) == pytest.approx(0.4 * float(rows[0]["col"]), abs=1e-3)
    assert rows[0]["model"] == "v1" and rows[0]["visible"] == "1" and rows[0]["sigma_row"]
    report = list(csv.DictReader(widget.export_cobb_report(tmp_path / "r.csv").open()))
    assert report[0]["measured_on"] == "mm" and report[0]["model"] == "v1"
    assert report[0]["spacing_col_mm"] == "0.4"


def test_long_messages_wrap_and_the_dock_keeps_its_width(widget, qtbot):
    before = widget.sizeHint().width()
    widget._say("x" * 400 + " /a/very/long/path/" * 20, "info")
    assert widget.sizeHint().width() <= before
    assert widget.status.wordWrap()
