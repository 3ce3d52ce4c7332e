"""Nothing a person saved is lost: annotation folders, malformed, read-only and all-hidden
sidecars, absurd coordinates, stale temporary files (real files, a real viewer)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.annotations import Annotation, read_annotation, sidecar_path, write_annotation
from napari_nfdp.simulator import synthesize_spine
from tests.conftest import SMALL_SHAPE
from tests.ui.conftest import detect_and_wait, open_and_wait

K = len(SPINE_LANDMARK_NAMES)


def _human_sidecar(path, points) -> None:
    write_annotation(
        path,
        Annotation(
            image_name="film1.png",
            image_shape=SMALL_SHAPE,
            landmark_names=SPINE_LANDMARK_NAMES,
            points=points,
            source=["human"] * K,
        ),
    )


def _edit_one_point(widget) -> None:
    data = widget.points_layer.data.copy()
    data[7] += (2.0, 1.0)
    widget.points_layer.data = data
    widget.autosaver.flush()


def test_a_chosen_folder_is_read_before_anything_is_written(widget, spine_folder, tmp_path, qtbot):
    film = spine_folder / "film1.png"
    open_and_wait(qtbot, widget, film)
    detect_and_wait(qtbot, widget)
    folder = tmp_path / "their-annotations"
    truth = synthesize_spine(101, shape=SMALL_SHAPE).landmarks
    _human_sidecar(sidecar_path(film, folder), truth)

    widget.set_annotation_folder(folder)

    np.testing.assert_allclose(widget.points_layer.data, truth)
    assert set(widget.points_layer.features["source"]) == {"human"}
    assert "Restored 68 landmarks" in widget.status.text()
    _edit_one_point(widget)
    saved = read_annotation(sidecar_path(film, folder))
    assert saved.source == ["human"] * K  # 68 human points, one of them moved
    np.testing.assert_allclose(np.delete(saved.points, 7, axis=0), np.delete(truth, 7, axis=0))


def test_a_folder_without_the_sidecar_gets_the_current_points(
    widget, spine_folder, tmp_path, qtbot
):
    film = spine_folder / "film1.png"
    open_and_wait(qtbot, widget, film)
    detect_and_wait(qtbot, widget)
    before = widget.points_layer.data.copy()
    widget.set_annotation_folder(tmp_path / "empty")
    np.testing.assert_allclose(widget.points_layer.data, before)
    _edit_one_point(widget)
    assert sidecar_path(film, tmp_path / "empty").is_file()


@pytest.mark.parametrize(
    "text, why",
    [
        ('{"format": "napari-nfdp-annotation", "version": 1, "image_shape": [1'
         + "0" * 400 + ", 5]}", "number"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ("{ not json", "json"),
        ("", "empty"),
    ],
)  # fmt: skip
def test_any_unreadable_sidecar_is_kept_byte_for_byte(widget, spine_folder, qtbot, text, why):
    film = spine_folder / "film2.png"
    sidecar = sidecar_path(film)
    sidecar.write_text(text)
    open_and_wait(qtbot, widget, film)
    status = widget.status.text()
    assert "Could not read the saved annotation film2.png.nfdp.json" in status, why
    copy = sidecar.with_name(sidecar.name + ".unreadable")
    assert copy.read_text() == text and "film2.png.nfdp.json.unreadable" in status
    detect_and_wait(qtbot, widget)
    _edit_one_point(widget)
    assert sidecar.read_text() == text  # autosave did not write over it
    assert "Autosave is off" in widget.save_label.text()
    assert widget.save() == sidecar  # an explicit save writes a new one; the copy stays
    assert read_annotation(sidecar).source[7] == "human"
    assert copy.read_text() == text


def test_absurd_coordinates_are_unreadable_not_a_crash(widget, spine_folder, qtbot):
    film = spine_folder / "film1.png"
    points = synthesize_spine(101, shape=SMALL_SHAPE).landmarks
    _human_sidecar(sidecar_path(film), points)
    raw = json.loads(sidecar_path(film).read_text())
    raw["points"][3] = [1e308, 5.0]
    sidecar_path(film).write_text(json.dumps(raw))
    before = sidecar_path(film).read_bytes()
    open_and_wait(qtbot, widget, film)
    assert "far outside" in widget.status.text()
    assert widget.points_layer is None
    detect_and_wait(qtbot, widget)
    _edit_one_point(widget)
    assert sidecar_path(film).read_bytes() == before


def test_a_read_only_sidecar_is_respected(widget, spine_folder, qtbot):
    film = spine_folder / "film1.png"
    sidecar = sidecar_path(film)
    _human_sidecar(sidecar, synthesize_spine(101, shape=SMALL_SHAPE).landmarks)
    sidecar.chmod(0o444)
    before = sidecar.read_bytes()
    open_and_wait(qtbot, widget, film)
    assert "read-only" in widget.status.text()
    _edit_one_point(widget)
    assert sidecar.read_bytes() == before
    assert widget.save() is None  # an explicit save is refused too, with a message
    assert "read-only" in widget.status.text()
    assert sidecar.read_bytes() == before and (sidecar.stat().st_mode & 0o777) == 0o444


def test_all_points_marked_not_visible_survive_detect(widget, spine_folder, qtbot):
    film = spine_folder / "film1.png"
    _human_sidecar(sidecar_path(film), np.full((K, 2), np.nan))
    open_and_wait(qtbot, widget, film)
    assert widget.points_layer is not None
    assert not widget.points_layer.features["visible"].any()
    detect_and_wait(qtbot, widget)
    assert not widget.points_layer.features["visible"].any()
    widget.autosaver.flush()
    saved = read_annotation(sidecar_path(film))
    assert np.isnan(saved.points).all() and saved.source == ["human"] * K


def test_stale_temporaries_are_cleared_fresh_ones_kept(widget, spine_folder, qtbot):
    stale = spine_folder / ".film1.png.nfdp.json.a1b2c3d4.tmp"
    fresh = spine_folder / ".film2.png.nfdp.json.e5f6g7h8.tmp"
    other = spine_folder / "notes.tmp"
    for path in (stale, fresh, other):
        path.write_text("partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    open_and_wait(qtbot, widget, spine_folder / "film1.png")
    assert not stale.exists()
    assert fresh.exists() and other.exists()  # a write may be running; not our naming
