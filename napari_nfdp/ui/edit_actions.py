"""Point edits of the dock: undo / redo, reset, "not visible", mouse drags, live Cobb angles.

:class:`EditActions` is a base of the dock widget. Every edit goes to the film's
:class:`~napari_nfdp.core.session.LandmarkSession` (the one owner of the landmarks), then the
layers get copies back and autosave is scheduled (debounced: never on the drag path). While a
point is dragged only the Cobb overlay is recomputed, from the positions the layer shows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from napari.layers import Image

from napari_nfdp.core.cobb import CobbResult
from napari_nfdp.core.detection import measure_cobb
from napari_nfdp.core.session import LandmarkSession, SessionError
from napari_nfdp.io.films import Film
from napari_nfdp.ui.editing import FilmLayers
from napari_nfdp.ui.keybinds import shortcut_text
from napari_nfdp.ui.model_controls import ModelControls


class EditActions(ModelControls):
    """The editing half of the dock widget (see the module docstring)."""

    _view: FilmLayers | None
    _cobb: dict[str, tuple[CobbResult | None, str | None]]

    def undo(self) -> None:
        """Undo the last point edit of the current image."""
        self._edit(lambda session: session.undo(), "Undid", "Nothing to undo.")

    def redo(self) -> None:
        """Redo the last undone point edit."""
        self._edit(lambda session: session.redo(), "Redid", "Nothing to redo.")

    def reset_point(self, index: int) -> None:
        """Put one landmark back where the model placed it."""
        self._edit(lambda session: session.reset([index]), "Back at the model's position:")

    def reset_selected(self) -> None:
        """Reset the selected points of the landmark layer to the model's prediction."""
        indices = self._selected()
        if indices:
            self._edit(lambda session: session.reset(indices), "Back at the model's position:")

    def reset_all(self) -> None:
        """Reset every corrected or hidden landmark to the model's prediction."""
        self._edit(
            lambda session: session.reset_all(),
            "Done:",
            "Every landmark already is the model's prediction.",
        )

    def toggle_visible(self, index: int | None = None) -> None:
        """Mark the selected landmarks (or ``index``) not visible, or visible again."""
        indices = [index] if index is not None else self._selected()
        if indices:
            self._edit(lambda session: session.toggle_visible(indices), "Done:")

    # -- editing ---------------------------------------------------------------------------------

    def _edit(
        self,
        change: Callable[[LandmarkSession], Any],
        done: str,
        nothing: str = "Nothing changed.",
    ) -> None:
        """Apply a button's change to the current session, then show and save the result."""
        view = self._view
        session = self._session(view) if view else None
        if session is None:
            self._say("Nothing to change: detect landmarks first.", "warning")
            return
        try:
            edit = change(session)
        except SessionError as error:
            self._say(f"{str(error)[:1].upper()}{str(error)[1:]}.", "warning")
            return
        if edit is None:
            self._say(nothing)
            return
        self._after_edit(view)
        self._say(f"{done} {edit.label}.")

    def _after_edit(self, view: FilmLayers) -> None:
        film = self._film(view)
        self._show(view)
        self.autosaver.schedule(film)

    def _on_edited(self, image: Image, action: str) -> None:
        """The landmark layer's data changed by a person (drag released, points added...)."""
        view = self._view_of(image)
        session = self._session(view) if view else None
        positions = view.positions() if view else None
        if session is None or positions is None:
            return
        if action in ("added", "removed") or len(positions) != len(session.names):
            if action in ("added", "removed"):
                self._later(partial(self._show, view))
                self._say(
                    "Landmarks cannot be added or deleted: drag them into place, or mark them "
                    f"not visible ({shortcut_text('toggle_visible')}).",
                    "warning",
                )
            return
        if action == "changed" and session.move_to(positions) is not None:
            film = self._film(view)
            view.restyle(self._features(session), not session.is_measurement)
            self._update_cobb(view)
            self._update_controls()
            self._show_angles(*self._angles(film))
            self.autosaver.schedule(film)

    def _on_moving(self, view: FilmLayers) -> None:
        """A redraw of the landmark layer, maybe mid-drag: let the Cobb overlay follow."""
        if self._update_cobb(view) and view is self._view:
            self._show_angles(*self._angles(self._film(view)))

    def _selected(self) -> list[int]:
        view = self._view
        if view is None or self._session(view) is None:
            self._say("Detect landmarks first.", "warning")
            return []
        selected = view.selected()
        if not selected:
            self._say("Select one or more points first (click them in the landmark layer).")
        return selected

    # -- Cobb angles ----------------------------------------------------------------------------

    def _update_cobb(self, view: FilmLayers) -> bool:
        """Recompute the Cobb angles from the points the layer shows; True when they changed.

        Cheap: it runs on every redraw while a point is dragged, and does nothing when the
        view already shows the angles of exactly these points.
        """
        film = self._film(view)
        session, positions = film.session, view.positions()
        if session is None or positions is None or positions.shape != (len(session.names), 2):
            return False
        positions[~session.visible] = np.nan
        if not view.needs_cobb(film.key, positions, session.doubt):
            return False
        if not session.is_measurement:
            angles = (None, f"No Cobb angles: {session.doubt}")
        else:
            angles = measure_cobb(positions, session.names, film.shape[0], film.spacing)
        self._cobb[film.key] = angles
        view.show_cobb(angles[0])
        return True

    def _angles(self, film: Film) -> tuple[CobbResult | None, str | None]:
        if film.session is None:
            return None, None
        return self._cobb.get(film.key, (None, None))
