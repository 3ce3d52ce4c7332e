"""Drag napari Points with real Qt mouse events, the way a person does.

The events are ``QMouseEvent`` s sent to the vispy canvas widget, so they take napari's real
path: vispy's Qt backend -> ``SceneCanvas.events.mouse_*`` -> napari's ``VispyCanvas`` (which
maps canvas pixels to world coordinates) -> the active layer's mouse callbacks (the Points
``select`` mode drag generator).

Two details of that path shape the helper:

* vispy drops a mouse move that comes less than 10 ms after the previous one, and napari
  throttles its mouse-move handler to one call per 5 ms, so moves are spaced ``MOVE_WAIT_MS``
  apart, with the event loop running in between;
* napari places the dragged point at the position of the *last move* (the release position is
  not used), so the last move is at the target and the release at the same place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from napari.layers import Layer, Points
from napari.viewer import Viewer
from qtpy.QtCore import QEvent, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QWidget

MOVE_WAIT_MS = 20  # > vispy's 10 ms mouse-move filter and napari's 5 ms throttle


def canvas_widget(viewer: Viewer) -> QWidget:
    """The Qt widget of the viewer's vispy canvas (where a person's mouse events arrive)."""
    return viewer.window._qt_viewer.canvas.native


def canvas_position(viewer: Viewer, layer: Layer, data_point: Sequence[float]) -> QPointF:
    """Canvas widget position (logical Qt pixels) of a point in the layer's data coordinates.

    Maps through the layer's vispy node, whose transform already holds the layer's
    data -> world transform (scale, translate, affine), then through the camera and view box
    to vispy's "canvas" system. That system is in logical pixels, like Qt mouse event
    positions: the device pixel ratio only enters between "canvas" and the framebuffer, so
    no correction is needed here.
    """
    visual = viewer.window._qt_viewer.canvas.layer_to_visual[layer]
    displayed = list(layer._slice_input.displayed)
    # vispy order: x = last displayed dim (column), y = the one before (row)
    xy = np.asarray(data_point, dtype=float)[displayed][::-1]
    transform = visual.node.get_transform(map_from="visual", map_to="canvas")
    mapped = np.asarray(transform.map(xy), dtype=float).ravel()
    x, y = mapped[:2] / mapped[3]  # homogeneous -> cartesian
    return QPointF(float(x), float(y))


def _send(
    widget: QWidget,
    kind: QEvent.Type,
    pos: QPointF,
    button: Qt.MouseButton,
    buttons: Qt.MouseButton,
) -> None:
    """Send one mouse event to the widget and let the event loop run."""
    event = QMouseEvent(
        kind, pos, widget.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()


def drag(
    viewer: Viewer,
    layer: Layer,
    start_data: Sequence[float],
    end_data: Sequence[float],
    steps: int = 8,
    qtbot: Any = None,
) -> None:
    """Drag with the left button from ``start_data`` to ``end_data`` (layer data coordinates).

    Makes ``layer`` the active layer and, for Points, puts it in "select" mode (where napari
    moves the point under the press in place). Sends a press at the start, ``steps`` moves
    with the left button held (the last one at the end) and a release at the end.
    ``qtbot``, when given, does the waiting between events; otherwise ``QTest.qWait``.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    viewer.layers.selection.active = layer
    if isinstance(layer, Points):
        layer.mode = "select"
    wait = qtbot.wait if qtbot is not None else QTest.qWait
    widget = canvas_widget(viewer)
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    start = np.asarray(start_data, dtype=float)
    end = np.asarray(end_data, dtype=float)

    _send(widget, QEvent.Type.MouseButtonPress, canvas_position(viewer, layer, start), left, left)
    for t in np.linspace(0.0, 1.0, steps + 1)[1:]:
        wait(MOVE_WAIT_MS)
        pos = canvas_position(viewer, layer, start + t * (end - start))
        _send(widget, QEvent.Type.MouseMove, pos, none, left)
    wait(MOVE_WAIT_MS)  # let a throttled last move through before the release
    pos = canvas_position(viewer, layer, end)
    _send(widget, QEvent.Type.MouseButtonRelease, pos, left, none)
    wait(1)


def drag_point(
    viewer: Viewer, layer: Points, index: int, end_data: Sequence[float], **kwargs: Any
) -> None:
    """Drag point ``index`` of a Points layer to ``end_data`` (data coordinates); see `drag`."""
    drag(viewer, layer, np.array(layer.data[index], dtype=float), end_data, **kwargs)
