"""Bad input gives a clear message in the widget, no traceback, and never overwrites annotations."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from napari.utils.notifications import ErrorNotification, notification_manager

from napari_nfdp.core import detection
from napari_nfdp.io.annotations import sidecar_path
from napari_nfdp.io.images import write_image
from tests.ui.conftest import detect_and_wait, open_and_wait, wait_idle


@pytest.fixture
def no_tracebacks():
    """Fail if an exception reached napari's notifications (a traceback dialog).

    Plain error and warning notifications are expected: the widget shows its messages there
    too, so that a hidden dock does not hide them.
    """
    before = len(notification_manager.records)
    yield
    tracebacks = [
        n for n in notification_manager.records[before:] if isinstance(n, ErrorNotification)
    ]
    assert not tracebacks, [n.message for n in tracebacks]


def _write_bad_files(folder):
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    tifffile.imwrite(folder / "stack.tif", np.zeros((5, 64, 64), dtype=np.uint16))
    write_image(folder / "tiny.png", np.full((20, 20), 200, dtype=np.uint8))
    return folder


@pytest.mark.parametrize(
    "name, message",
    [
        ("notes.txt", "not a radiograph"),
        ("broken.dcm", "Cannot open broken.dcm"),
        ("stack.tif", "Cannot open stack.tif"),
        ("tiny.png", "Cannot open tiny.png"),
        ("missing.png", "Cannot open missing.png"),
    ],
)
def test_bad_files_give_a_message_and_keep_the_annotation(
    widget, spine_folder, tmp_path, qtbot, no_tracebacks, name, message
):
    open_and_wait(qtbot, widget, spine_folder / "film1.png")
    detect_and_wait(qtbot, widget)
    sidecar = sidecar_path(spine_folder / "film1.png")
    saved = sidecar.read_bytes()
    bad = _write_bad_files(tmp_path / "bad")
    widget.open_path(bad / name)
    wait_idle(qtbot, widget)
    assert message in widget.status.text()
    assert "#ff5a5a" in widget.status.styleSheet()  # shown as an error
    last = notification_manager.records[-1]  # and as a napari notification, naming the file
    assert message in last.message and str(last.severity).lower() == "error"
    assert widget.image_layer.name == "film1" and widget.points_layer is not None
    assert sidecar.read_bytes() == saved


def test_blank_film_says_no_spine(widget, tmp_path, qtbot, no_tracebacks):
    write_image(tmp_path / "blank.png", np.full((256, 128), 3000, dtype=np.uint16))
    open_and_wait(qtbot, widget, tmp_path / "blank.png")
    detect_and_wait(qtbot, widget)
    assert "No spine found?" in widget.status.text()
    assert widget.points_layer is None
    assert not sidecar_path(tmp_path / "blank.png").exists()


def test_doubtful_detection_is_shown_but_never_overwrites(
    widget, spine_folder, qtbot, monkeypatch, no_tracebacks
):
    film = spine_folder / "film1.png"
    open_and_wait(qtbot, widget, film)
    monkeypatch.setattr(detection, "NO_SPINE_SIGMA_FACTOR", 1e-6)  # every film looks doubtful
    detect_and_wait(qtbot, widget)
    assert "No spine found?" in widget.status.text()
    assert widget.points_layer is not None and len(widget.points_layer.data) == 68
    assert not sidecar_path(film).exists()  # not saved until someone confirms it
    widget.save()
    saved = sidecar_path(film).read_bytes()
    detect_and_wait(qtbot, widget)
    assert "left unchanged" in widget.status.text()
    assert sidecar_path(film).read_bytes() == saved


def test_stack_layer_and_no_image(widget, qtbot, no_tracebacks):
    widget.detect()
    assert "Open a radiograph first" in widget.status.text()
    widget.viewer.add_image(np.zeros((3, 64, 64), dtype=np.uint8), name="stack")
    qtbot.waitUntil(lambda: widget.image_layer is not None)
    assert widget.detect() is None
    assert "3-D stack" in widget.status.text()


def test_unreadable_annotation_is_left_untouched(widget, spine_folder, qtbot, no_tracebacks):
    film = spine_folder / "film2.png"
    sidecar = sidecar_path(film)
    sidecar.write_text("{ not json")
    open_and_wait(qtbot, widget, film)
    assert "Could not read the saved annotation" in widget.status.text()
    detect_and_wait(qtbot, widget)
    data = widget.points_layer.data.copy()
    data[0] += 3
    widget.points_layer.data = data  # an edit would autosave ...
    assert sidecar.read_text() == "{ not json"  # ... but not over the unreadable file
    assert widget.save() == sidecar  # an explicit save keeps the old file aside
    assert sidecar.with_name(sidecar.name + ".unreadable").read_text() == "{ not json"
    assert widget.points_layer.features["source"].iloc[0] == "human"


def test_image_without_file_is_not_saved_until_a_folder_is_chosen(
    widget, tmp_path, qtbot, no_tracebacks
):
    from napari_nfdp._sample_data import sample_spine

    data, kwargs, _ = sample_spine()[0]
    widget.viewer.add_image(data, **kwargs)
    qtbot.waitUntil(lambda: widget.image_layer is not None)
    detect_and_wait(qtbot, widget)
    assert widget.points_layer is not None
    assert widget.save() is None and "no file on disk" in widget.status.text()
    widget.set_annotation_folder(tmp_path / "annotations")
    (tmp_path / "annotations").mkdir()
    assert widget.save() == tmp_path / "annotations" / "synthetic spine.nfdp.json"
