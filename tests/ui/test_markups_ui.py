"""3D Slicer markups in a real napari viewer: the dock's export, napari's save and open through
the npe2 writer and reader, and a film annotated in Slicer opening with its points."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_nfdp._markups_io import read_markups_layers, write_markups_layer
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.annotations import Annotation, read_annotation, sidecar_path
from napari_nfdp.io.markups import FilmFrame, markups_path, read_markups, write_markups
from tests.ui.conftest import (
    detect_and_wait,
    open_and_wait,
    truth,
    write_spine_folder,
)

K = len(SPINE_LANDMARK_NAMES)


def _angles(path) -> dict[str, float]:
    markups = json.loads(path.read_text())["markups"]
    return {
        m["name"].split()[0]: m["measurements"][0]["value"] for m in markups if m["type"] == "Angle"
    }


def test_dock_exports_slicer_markups_of_the_folder(widget, spine_folder, qtbot, tmp_path):
    open_and_wait(qtbot, widget, spine_folder)
    detect_and_wait(qtbot, widget)
    layer = widget.points_layer
    assert layer is not None, widget.status.text()
    assert widget.markups_button.text() == "Export Slicer markups…"
    out = tmp_path / "slicer"
    written = widget.export_markups(out)
    assert written == [out / "film1.mrk.json"]
    assert "Exported 3D Slicer markups of 1 image(s)" in widget.status.text()
    back = read_markups(written[0])
    visible = layer.features["visible"].to_numpy(bool)
    assert back.names == SPINE_LANDMARK_NAMES and back.image_shape == (256, 128)
    np.testing.assert_array_equal(np.isfinite(back.points).all(axis=1), visible)
    np.testing.assert_allclose(back.points[visible], layer.data[visible], atol=1e-4)
    assert back.source == list(layer.features["source"])
    measured = {c.name: c.angle for c in widget.cobb_result.curves if c.measured}
    assert measured and _angles(written[0]) == {
        name: round(angle, 6) for name, angle in measured.items()
    }


def test_napari_saves_and_opens_markups_with_the_landmark_features(
    widget, spine_folder, qtbot, tmp_path
):
    open_and_wait(qtbot, widget, spine_folder)
    detect_and_wait(qtbot, widget)
    layer = widget.points_layer
    path = tmp_path / "saved.mrk.json"
    assert layer.save(str(path), plugin="napari-nfdp") == [str(path)]
    saved = read_markups(path)  # the writer found the image: its name, size and the angles
    assert saved.image_name == "film1.png" and saved.image_shape == (256, 128)
    assert set(_angles(path)) == {c.name for c in widget.cobb_result.curves if c.measured}

    (opened,) = widget.viewer.open(str(path), plugin="napari-nfdp")
    assert opened._type_string == "points" and opened.name == "saved landmarks"
    np.testing.assert_allclose(opened.data, layer.data, atol=1e-4)
    for column in ("name", "vertebra", "corner", "source", "visible"):
        assert list(opened.features[column]) == list(layer.features[column]), column
    assert opened.metadata["image_shape"] == (256, 128)


def test_a_film_annotated_in_slicer_opens_with_those_points(widget, qtbot, tmp_path):
    (film,) = write_spine_folder(tmp_path / "films", seeds=(102,))
    points = truth(102).copy()
    points[7] = np.nan  # marked not visible in Slicer
    ann = Annotation(film.name, (256, 128), SPINE_LANDMARK_NAMES, points, ["human"] * K)
    write_markups(markups_path(film), ann)
    open_and_wait(qtbot, widget, film)
    layer = widget.points_layer
    assert layer is not None, widget.status.text()
    status = widget.status.text()
    assert "from the 3D Slicer markups film1.mrk.json" in status and "1 not visible" in status
    assert set(layer.features["source"]) == {"human"}
    assert not layer.features["visible"].iloc[7]
    shown = np.isfinite(points).all(axis=1)
    np.testing.assert_allclose(layer.data[shown], points[shown], atol=1e-4)
    assert widget.cobb_result is not None  # measured on the Slicer points
    assert not sidecar_path(film).exists()  # nothing written until a correction or Save
    assert widget.save() == sidecar_path(film)
    saved = read_annotation(sidecar_path(film))
    assert saved.source == ["human"] * K and np.isnan(saved.points[7]).all()


def test_reader_layer_saved_again_keeps_frame_points_and_sources(tmp_path):
    points = truth(101).copy()
    points[[2, 30]] = np.nan
    source = ["human" if i in (2, 4) else "model" for i in range(K)]
    ann = Annotation("film.dcm", (256, 128), SPINE_LANDMARK_NAMES, points, source)
    frame = FilmFrame.from_info(
        {
            "spacing": (0.3, 0.25),
            "image_position": (5.0, -7.0, 120.0),
            "image_orientation": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        }
    )
    path = write_markups(tmp_path / "film.mrk.json", ann, frame=frame)
    ((data, kwargs, kind),) = read_markups_layers(str(path))
    assert kind == "points" and kwargs["scale"] == (0.3, 0.25) and len(data) == K
    assert not kwargs["features"]["visible"].iloc[30]
    out = tmp_path / "again.mrk.json"
    assert write_markups_layer(str(out), data, kwargs) == [str(out)]
    back = read_markups(out)
    assert back.frame == frame and back.image_shape == (256, 128)
    assert back.source == source and back.image_name == "film.dcm"
    np.testing.assert_allclose(back.points, points, atol=1e-4)
    assert _angles(out) == pytest.approx(_angles(path), abs=1e-4)
