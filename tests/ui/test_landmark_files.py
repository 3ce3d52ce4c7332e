"""The plugin's landmark files in napari: the "NFDP landmark table" writer and its reader, the
``.nfdp.json`` sidecar reader, all through a real viewer's save and open."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Image, Points, Shapes
from napari.utils.notifications import notification_manager

from napari_nfdp.io.annotations import sidecar_path
from tests.ui.conftest import (
    WAIT_MS,
    detect_and_wait,
    open_and_wait,
    truth,
    write_corrections,
    write_spine_folder,
)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_points_saved_as_a_landmark_table_open_again(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    points = np.array([[12.0, 7.0], [40.0, 9.5], [44.0, 30.0]])
    original = viewer.add_points(
        points,
        name="my points",
        features={
            "vertebra": ["L5"] * 3,
            "corner": ["top-left", "top-right", "bottom-left"],
            "source": ["model", "human", "human"],
            "visible": [True, True, False],
        },
        metadata={"path": "/data/film.png"},
    )
    out = tmp_path / "saved.nfdp.csv"
    assert viewer.layers.save(str(out)) == [str(out)]  # no plugin named: the extension is ours
    rows = _rows(out)
    assert [(r["image"], r["landmark"], r["visible"]) for r in rows] == [
        ("film.png", "L5-top-left", "1"),
        ("film.png", "L5-top-right", "1"),
        ("film.png", "L5-bottom-left", "0"),  # not visible: saved without a position
    ]
    assert rows[2]["row"] == rows[2]["col"] == ""

    (layer,) = viewer.open(str(out), plugin="napari-nfdp")  # napari's CSV reader matches too
    assert isinstance(layer, Points) and layer.name == "film landmarks"
    features = layer.features
    assert list(features["name"]) == ["L5-top-left", "L5-top-right", "L5-bottom-left"]
    assert list(features["source"]) == ["model", "human", "human"]
    assert list(features["visible"]) == [True, True, False]
    assert list(layer.symbol) == ["disc", "disc", "x"]  # drawn as the dock draws them
    np.testing.assert_allclose(layer.data[:2], points[:2], atol=1e-3)
    np.testing.assert_allclose(layer.data[2], points[1], atol=1e-3)  # beside its neighbour

    # napari's own points writer keeps plain .csv
    viewer.layers.selection = {original}
    plain = tmp_path / "plain.csv"
    viewer.layers.save(str(plain), selected=True)
    assert plain.read_text().startswith("index,axis-0,axis-1")


def test_dock_landmarks_round_trip_through_the_table(widget, spine_folder, qtbot, tmp_path):
    open_and_wait(qtbot, widget, spine_folder / "film1.png")
    detect_and_wait(qtbot, widget)
    viewer, points = widget.viewer, widget.points_layer
    viewer.layers.selection = {points}
    out = tmp_path / "film1.nfdp.csv"
    viewer.layers.save(str(out), selected=True)
    rows = _rows(out)
    assert len(rows) == 68 and {r["image"] for r in rows} == {"film1.png"}
    assert {r["source"] for r in rows} == {"model"}

    (layer,) = viewer.open(str(out), plugin="napari-nfdp")
    assert layer.name == "film1 landmarks [1]"  # beside the dock's own layer
    for column in ("name", "vertebra", "corner", "source", "visible"):
        assert list(layer.features[column]) == list(points.features[column]), column
    np.testing.assert_allclose(layer.data, points.data, atol=1e-3)
    assert widget.points_layer is points  # the dock keeps its layer


def test_opening_a_sidecar_opens_its_film_and_landmarks(make_napari_viewer, tmp_path):
    films = write_spine_folder(tmp_path / "films", seeds=(101,))
    write_corrections(films, seeds=(101,))
    sidecar = sidecar_path(films[0])
    data = json.loads(sidecar.read_text())
    data["points"][5] = [None, None]  # marked not visible
    sidecar.write_text(json.dumps(data))
    viewer = make_napari_viewer()
    image, points = viewer.open(str(sidecar), plugin=None)  # napari picks: the only reader
    assert isinstance(image, Image) and image.name == "film1" and image.data.shape == (256, 128)
    assert image.metadata["path"] == str(films[0])
    assert isinstance(points, Points) and points.name == "film1 landmarks"
    assert len(points.data) == 68 and set(points.features["source"]) == {"human"}
    visible = points.features["visible"].to_numpy()
    assert not visible[5] and visible.sum() == 67 and points.symbol[5] == "x"
    np.testing.assert_allclose(points.data[visible], truth(101)[visible], atol=1e-9)
    assert points.metadata["nfdp_sidecar"] == str(sidecar)


def test_a_sidecar_without_its_film_opens_the_landmarks_and_says_so(make_napari_viewer, tmp_path):
    films = write_spine_folder(tmp_path / "films", seeds=(101,))
    write_corrections(films, seeds=(101,))
    moved = tmp_path / "elsewhere" / sidecar_path(films[0]).name
    moved.parent.mkdir()
    sidecar_path(films[0]).rename(moved)
    viewer = make_napari_viewer()
    before = len(notification_manager.records)
    (points,) = viewer.open(str(moved), plugin=None)
    assert isinstance(points, Points) and len(points.data) == 68
    warnings = [n.message for n in notification_manager.records[before:]]
    assert any("film1.png is not beside it" in m for m in warnings), warnings


def test_a_broken_sidecar_is_an_error_naming_it(make_napari_viewer, tmp_path):
    bad = tmp_path / "film.png.nfdp.json"
    bad.write_text("{ not json")
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match="film.png.nfdp.json: not a readable annotation"):
        viewer.open(str(bad), plugin="napari-nfdp")
    assert not viewer.layers


def test_the_dock_takes_over_the_landmarks_of_an_opened_sidecar(widget, tmp_path, qtbot):
    films = write_spine_folder(tmp_path / "films", seeds=(101, 102))
    write_corrections(films, seeds=(101, 102))
    viewer = widget.viewer
    _, opened = viewer.open(str(sidecar_path(films[0])), plugin=None)
    qtbot.waitUntil(lambda: widget.points_layer is not None, timeout=WAIT_MS)
    assert widget.points_layer is opened  # one landmark layer: the dock's, editable
    assert [type(layer) for layer in viewer.layers] == [Image, Shapes, Points]
    assert "nfdp_sidecar" not in opened.metadata
    assert widget.cobb_result is not None and widget.session.human_count == 68
    widget.next_image()  # the same layers show the next film of the folder
    qtbot.waitUntil(lambda: widget.image_layer.name == "film2", timeout=WAIT_MS)
    assert widget.points_layer is opened and opened.name == "film2 landmarks"
    np.testing.assert_allclose(opened.data, truth(102), atol=1e-9)
