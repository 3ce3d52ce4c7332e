"""The layers of one image view and the drag path: napari in, copies out.

:class:`FilmLayers` holds an image layer and, once there are landmarks, its Points and Cobb
Shapes layers (the landmark layer the sidecar reader opened with the film, if there is one).
Stepping to another film puts the new data into these same layers (Mesa's
software OpenGL crashes when layers are removed and added again in a loop). The layers only
ever get copies of a session's positions; what a person does to them comes back through two
callbacks: ``on_moving`` on every redraw while a point is dragged (cheap: the Cobb overlay
follows the pointer) and ``on_edited`` when an edit ends (the release of a drag, a keyboard
nudge), which the dock widget turns into one undoable session edit.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Points, Shapes

from napari_nfdp.core.cobb import CobbResult
from napari_nfdp.ui._napari_shim import data_action, on_points_moving
from napari_nfdp.ui.layers import (
    fit_to_image,
    make_cobb_layer,
    make_points_layer,
    restyle_points,
    show_cobb,
)


class FilmLayers:
    """An image layer with its landmark and Cobb layers, reused from film to film."""

    def __init__(
        self,
        viewer: Any,
        image: Image,
        on_moving: Callable[[], None],
        on_edited: Callable[[str], None],
    ) -> None:
        self.viewer = viewer
        self.image = image
        self.points: Points | None = None
        self.cobb: Shapes | None = None
        self._on_moving = on_moving
        self._on_edited = on_edited
        self._applying = False
        self._disconnects: list[Callable[[], None]] = []
        self._cobb_drawn: tuple[str, np.ndarray, str | None] | None = None

    # -- film data ----------------------------------------------------------------------------

    def show_film(self, data: np.ndarray, kwargs: dict[str, Any]) -> None:
        """Put another film into the same image layer (and fit the overlays to it)."""
        image = self.image
        image.metadata = dict(kwargs.get("metadata", {}))
        image.data = data
        image.scale = kwargs.get("scale", (1.0, 1.0))
        image.units = kwargs.get("units", ("pixel", "pixel"))
        image.name = kwargs.get("name", image.name)
        image.reset_contrast_limits()
        for layer in (self.points, self.cobb):
            if layer is not None:
                fit_to_image(layer, image)
                layer.name = f"{image.name} {'landmarks' if layer is self.points else 'Cobb'}"

    @property
    def pixels(self) -> Any:
        """The image array (the full-resolution level of a multiscale image)."""
        return self.image.data[0] if self.image.multiscale else self.image.data

    def folder(self) -> tuple[list[str], int]:
        """The folder's files this view steps through, and the place of its film among them."""
        meta = self.image.metadata
        return [str(f) for f in meta.get("nfdp_files") or []], int(meta.get("nfdp_index", 0))

    # -- landmarks ----------------------------------------------------------------------------

    def show_points(
        self, positions: np.ndarray, features: pd.DataFrame, *, labels: bool, doubtful: bool
    ) -> None:
        """Show landmarks (a copy of ``positions``), creating the layers on first use."""
        if self.points is None:
            self._create(positions, features, labels)
        with self.applying():  # the caller draws the Cobb lines once, after
            if len(self.points.data) != len(positions) or (self.points.data != positions).any():
                self.points.data = np.array(positions, dtype=float)
            restyle_points(self.points, features, doubtful)

    def clear_points(self) -> None:
        """No landmarks for this film: empty the layers, keep them for later."""
        if self.points is not None and len(self.points.data):
            with self.applying():
                self.points.selected_data = set()
                self.points.data = np.empty((0, 2))
        self._cobb_drawn = None
        self.show_cobb(None)

    def restyle(self, features: pd.DataFrame, doubtful: bool) -> None:
        """New sources / visibility / review flags on the same positions."""
        if self.points is not None:
            with self.applying():
                restyle_points(self.points, features, doubtful)

    def positions(self) -> np.ndarray | None:
        """A copy of the positions the layer shows now (mid-drag ones included)."""
        return None if self.points is None else np.array(self.points.data, dtype=float)

    def needs_cobb(self, key: str, points: np.ndarray, doubt: str | None) -> bool:
        """Whether the Cobb lines shown are not those of film ``key`` at ``points`` (NaN rows
        hidden); remembers these as shown."""
        drawn = self._cobb_drawn
        if (
            drawn is not None
            and drawn[0] == key
            and drawn[2] == doubt
            and np.array_equal(drawn[1], points, equal_nan=True)
        ):
            return False
        self._cobb_drawn = (key, points.copy(), doubt)
        return True

    def show_cobb(self, result: CobbResult | None) -> None:
        """Draw the Cobb lines (None clears them)."""
        if self.cobb is not None:
            show_cobb(self.cobb, result)

    def selected(self) -> list[int]:
        """The indices of the selected landmarks."""
        return sorted(self.points.selected_data) if self.points is not None else []

    def forget(self, layer: Any) -> None:
        """A layer was removed from the viewer by the user: stop using it."""
        if layer is self.points:
            self._disconnect()
            self.points = None
            if self.cobb is not None and self.cobb in self.viewer.layers:
                self.viewer.layers.remove(self.cobb)
        if layer is self.cobb or layer is self.points:
            self.cobb = None

    def remove(self) -> None:
        """Take the overlay layers out of the viewer (the image itself was closed)."""
        self._disconnect()
        for layer in (self.points, self.cobb):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.points = self.cobb = None

    @contextmanager
    def applying(self):
        """Changes made inside are the program's, not a person's edit."""
        self._applying = True
        try:
            yield
        finally:
            self._applying = False

    # -- internals ----------------------------------------------------------------------------

    def _create(self, positions: np.ndarray, features: pd.DataFrame, labels: bool) -> None:
        self.cobb = make_cobb_layer(self.image)
        opened = self._opened_landmarks()
        if opened is None:
            self.viewer.add_layer(self.cobb)
            self.points = make_points_layer(self.image, positions, features, labels=labels)
            self.viewer.add_layer(self.points)
        else:  # the film's sidecar was opened in napari: its layer becomes ours
            self.viewer.layers.insert(self.viewer.layers.index(opened), self.cobb)
            opened.metadata = {k: v for k, v in opened.metadata.items() if k != "nfdp_sidecar"}
            fit_to_image(opened, self.image)
            opened.text.visible = labels
            self.points = opened
        self.points.mode = "select"  # ready to drag
        points = self.points

        def on_data(event: Any) -> None:
            if not self._applying:
                self._on_edited(data_action(event))

        def on_moving() -> None:
            if not self._applying:
                self._on_moving()

        points.events.data.connect(on_data)
        self._disconnects = [
            lambda: points.events.data.disconnect(on_data),
            on_points_moving(points, on_moving),
        ]

    def _opened_landmarks(self) -> Points | None:
        """A landmark layer the sidecar reader opened with this film, not yet the dock's."""
        path = self.image.metadata.get("path")
        for layer in self.viewer.layers:
            meta = layer.metadata
            if (
                isinstance(layer, Points)
                and path
                and meta.get("nfdp_sidecar")
                and meta.get("nfdp_image_path") == str(path)
            ):
                return layer
        return None

    def _disconnect(self) -> None:
        for disconnect in self._disconnects:
            disconnect()
        self._disconnects.clear()
