"""The napari behaviour this plugin relies on beyond the documented API, in one place.

If a napari release changes any of it, this is the only file to adapt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from napari.layers import Points, Shapes
from napari.utils import progress


def on_points_moving(layer: Points, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` whenever the points are redrawn, including mid-drag; return a disconnect.

    While a point is dragged with the mouse, napari (0.5 - 0.9) blocks ``events.data`` and emits
    only CHANGING at the start and CHANGED at the release; the in-place moves in between are
    announced only through the redraw event ``events.set_data``. Listening to it is what lets
    the Cobb overlay follow the pointer. The callback must be cheap and tolerate redraws that
    moved nothing.
    """

    def handler(_event: Any = None) -> None:
        callback()

    layer.events.set_data.connect(handler)
    return lambda: layer.events.set_data.disconnect(handler)


def data_action(event: Any) -> str:
    """The action of a layer ``events.data`` event as text: "changing", "changed", "added"..."""
    return str(getattr(event, "action", ""))


def move_shapes(layer: Shapes, vertices: Sequence[np.ndarray]) -> None:
    """Give the existing shapes of a layer new vertices, in place, and redraw.

    Rebuilding a Shapes layer through its ``data`` setter costs ~10 ms for a handful of lines;
    editing the shape list directly (as napari's own vertex editing does) is a fraction of it,
    which keeps the Cobb overlay smooth while a point is dragged. Only shapes whose vertices
    changed are edited (a drag usually moves one end-vertebra line). Counts and types must
    match.
    """
    shapes = layer._data_view.shapes
    changed = False
    for index, points in enumerate(vertices):
        points = np.asarray(points, dtype=float)
        if not np.array_equal(shapes[index].data, points.astype(shapes[index].data.dtype)):
            layer._data_view.edit(index, points)
            changed = True
    if changed:
        layer.refresh()


def open_progress_bars() -> list[progress]:
    """The napari progress bars open now: those napari's activity dock lists.

    napari keeps them in the class attribute ``progress._all_instances`` (added on creation,
    removed on ``close``); its own tests look there too.
    """
    return list(progress._all_instances)
