"""Self-test of the real-mouse drag helper (tests/ui/mouse.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.mouse import canvas_position, drag_point

SCALE = (0.5, 0.5)
POINTS = np.array([[40.0, 30.0], [100.0, 50.0], [160.0, 70.0]])
SHIFT = np.array([20.0, 10.0])


@pytest.fixture
def scene(make_napari_viewer):
    """A shown viewer with a 200 x 100 image and 3 points, both at scale 0.5."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((200, 100), dtype=np.uint8), scale=SCALE)
    points = viewer.add_points(POINTS.copy(), scale=SCALE, size=6)
    events = []
    points.events.data.connect(lambda e: events.append(str(e.action)))
    return viewer, points, events


def check_drag(viewer, points, events, qtbot) -> None:
    target = POINTS[1] + SHIFT
    drag_point(viewer, points, 1, target, qtbot=qtbot)
    moved = np.asarray(points.data)
    assert np.abs(moved[1] - target).max() < 1.0, moved[1]
    np.testing.assert_array_equal(moved[[0, 2]], POINTS[[0, 2]])
    # CHANGING at the first move, CHANGED once, at the release
    assert events == ["changing", "changed"], events


def test_canvas_position_matches_napari_mapping(scene):
    """The helper's data -> canvas mapping inverts napari's canvas -> world mapping."""
    viewer, points, _ = scene
    qt_canvas = viewer.window._qt_viewer.canvas
    pos = canvas_position(viewer, points, POINTS[1])
    world = qt_canvas._map_canvas2world((pos.x(), pos.y()), qt_canvas.view)
    np.testing.assert_allclose(world, POINTS[1] * SCALE, atol=1e-6)


def test_drag_point(scene, qtbot):
    viewer, points, events = scene
    check_drag(viewer, points, events, qtbot)


def test_drag_point_zoomed_and_panned(scene, qtbot):
    viewer, points, events = scene
    viewer.scene.camera.zoom = 3
    viewer.scene.camera.center = tuple(points.data_to_world(POINTS[1]))
    check_drag(viewer, points, events, qtbot)
