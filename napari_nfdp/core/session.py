"""The one owner of a film's landmarks: positions, source, visibility, sigma, model, undo history.

A :class:`LandmarkSession` is napari-free. The GUI hands it what a person did (moves, resets,
"not visible") and what a model found (:meth:`LandmarkSession.merge_prediction`), and reads
copies back for its layers; the sidecar is written from :meth:`LandmarkSession.to_annotation`
and read with :meth:`LandmarkSession.from_annotation`. The rules live here:

* a point a person moved, hid or showed is ``source = "human"``; a reset point is "model";
* a new detection replaces the model's points and never a human one (hidden ones included);
* a doubtful detection (the plausibility check failed) never replaces existing points, and
  the session it starts stays ``doubt``-ful (not a measurement) until a person edits or saves;
* every change is one undoable edit; ``revision`` counts changes, for autosave.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from napari_nfdp.core.history import Edit, EditHistory, PointRows

if TYPE_CHECKING:  # no torch import for the session
    from napari_nfdp.core.localizer import Prediction

MODEL, HUMAN = "model", "human"


class SessionError(ValueError):
    """An edit or merge that the session refuses (the message says why)."""


class DoubtfulDetection(SessionError):
    """A detection that failed the plausibility check may not replace existing points."""


class LandmarkSession:
    """The landmarks of one film and everything needed to edit, undo and save them."""

    def __init__(
        self,
        names: Sequence[str],
        positions: np.ndarray,
        *,
        source: Sequence[str] | None = None,
        visible: Sequence[bool] | np.ndarray | None = None,
        sigma: np.ndarray | None = None,
        model_points: np.ndarray | None = None,
        model_id: str | None = None,
        doubt: str | None = None,
        model_visible: Sequence[bool] | np.ndarray | None = None,
        model_review: Sequence[bool] | np.ndarray | None = None,
    ) -> None:
        self.names = tuple(names)
        k = len(self.names)
        self._positions = np.array(positions, dtype=float).reshape(k, 2)
        self._source = list(source) if source is not None else [MODEL] * k
        self._visible = np.ones(k, bool) if visible is None else np.array(visible, dtype=bool)
        self.sigma = None if sigma is None else np.array(sigma, dtype=float)
        self._model = (
            np.full((k, 2), np.nan) if model_points is None else np.array(model_points, float)
        )
        self._model_visible = (
            np.ones(k, bool) if model_visible is None else np.array(model_visible, dtype=bool)
        )
        self._model_review = (
            np.zeros(k, bool) if model_review is None else np.array(model_review, dtype=bool)
        )
        self.model_id = model_id
        self.doubt = doubt
        self.history = EditHistory()
        self.revision = 0

    # -- building and saving ----------------------------------------------------------------

    @classmethod
    def from_prediction(
        cls, prediction: Prediction, model_id: str | None, doubt: str | None = None
    ) -> LandmarkSession:
        """A fresh session holding a model's prediction.

        ``doubt``: why it looks implausible. The points the model places off the film start
        as not visible; its own review flags are kept for display.
        """
        return cls(
            prediction.landmark_names,
            prediction.landmarks,
            visible=prediction.visible,
            sigma=prediction.sigma,
            model_points=prediction.landmarks,
            model_id=model_id,
            doubt=doubt,
            model_visible=prediction.visible,
            model_review=prediction.review,
        )

    @classmethod
    def from_saved(
        cls,
        names: Sequence[str],
        points: np.ndarray,
        source: Sequence[str],
        sigma: np.ndarray | None,
        model_id: str | None,
        image_shape: tuple[int, int] | None = None,
    ) -> LandmarkSession:
        """A session from saved points (NaN rows: not visible).

        Hidden points get positions between their visible neighbours (or, when none is
        visible, down the middle of the image) so they can be shown and dragged; the model's
        position is known only for the points still ``source = "model"``. Every saved
        decision is kept, "not visible" included, even when no point is visible.
        """
        points = np.array(points, dtype=float)
        visible = np.isfinite(points).all(axis=1)
        model = points.copy()
        model[[s != MODEL for s in source]] = np.nan
        return cls(
            names,
            _fill_hidden(points, image_shape),
            source=source,
            visible=visible,
            sigma=sigma,
            model_points=model,
            model_id=model_id,
        )

    def points(self) -> np.ndarray:
        """(K, 2) positions with NaN rows for the points marked not visible (what is saved)."""
        points = self._positions.copy()
        points[~self._visible] = np.nan
        return points

    # -- reading (copies: nobody else may change the session's state) --------------------------

    @property
    def positions(self) -> np.ndarray:
        """(K, 2) positions of every point, hidden ones included (a copy)."""
        return self._positions.copy()

    @property
    def source(self) -> tuple[str, ...]:
        return tuple(self._source)

    @property
    def visible(self) -> np.ndarray:
        return self._visible.copy()

    @property
    def model_review(self) -> np.ndarray:
        """(K,) the points the last detection said to check first."""
        return self._model_review.copy()

    @property
    def human_count(self) -> int:
        return self._source.count(HUMAN)

    @property
    def hidden_count(self) -> int:
        return int((~self._visible).sum())

    @property
    def is_measurement(self) -> bool:
        """False for a doubtful detection that no person has confirmed yet."""
        return self.doubt is None

    def describe(self, indices: Sequence[int] | np.ndarray) -> str:
        """ "T5-top-left" for one point, "3 points" for several."""
        indices = list(indices)
        return self.names[indices[0]] if len(indices) == 1 else f"{len(indices)} points"

    # -- edits --------------------------------------------------------------------------------

    def moved_rows(self, positions: np.ndarray) -> np.ndarray:
        """Indices of the rows of ``positions`` (e.g. a layer's data) that differ from ours."""
        positions = np.asarray(positions, dtype=float)
        if positions.shape != self._positions.shape:
            raise SessionError(
                f"expected {len(self.names)} points, got {len(positions)}: landmarks cannot be "
                "added or deleted"
            )
        return np.flatnonzero((positions != self._positions).any(axis=1))

    def move_to(self, positions: np.ndarray) -> Edit | None:
        """Take every row of ``positions`` that moved as one human edit (None if none moved)."""
        moved = self.moved_rows(positions)
        if moved.size == 0:
            return None
        new = np.asarray(positions, dtype=float)[moved]
        return self._edit(f"move {self.describe(moved)}", moved, new, HUMAN, self._visible[moved])

    def toggle_visible(self, indices: Sequence[int]) -> Edit | None:
        """Mark points not visible (or visible again when all of them are hidden)."""
        indices = self._checked(indices)
        if indices.size == 0:
            return None
        hide = bool(self._visible[indices].all())
        what = "not visible" if hide else "visible"
        return self._edit(
            f"mark {self.describe(indices)} {what}",
            indices,
            self._positions[indices],
            HUMAN,
            np.full(indices.size, not hide),
        )

    def reset(self, indices: Sequence[int], label: str | None = None) -> Edit | None:
        """Put points back where the model placed them (visible, ``source = "model"``)."""
        indices = self._checked(indices)
        if indices.size == 0:
            return None
        unknown = indices[~np.isfinite(self._model[indices]).all(axis=1)]
        if unknown.size:
            raise SessionError(
                f"the model's position of {self.describe(unknown)} is not known (the annotation "
                "was reopened from disk): run Detect first; it keeps your corrections"
            )
        return self._edit(
            label or f"reset {self.describe(indices)}",
            indices,
            self._model[indices],
            MODEL,
            self._model_visible[indices],
        )

    def changed_from_model(self) -> np.ndarray:
        """Indices of the points that are not simply the model's visible prediction."""
        known = np.isfinite(self._model).all(axis=1)
        moved = np.zeros(len(self.names), dtype=bool)
        moved[known] = (self._positions[known] != self._model[known]).any(axis=1)
        human = np.array([s == HUMAN for s in self._source], dtype=bool)
        return np.flatnonzero(human | (self._visible != self._model_visible) | moved)

    def reset_all(self) -> Edit | None:
        """Reset every corrected or hidden point (None when all are the model's already)."""
        return self.reset(self.changed_from_model(), label="reset all")

    def merge_prediction(
        self, prediction: Prediction, model_id: str | None, doubt: str | None = None
    ) -> Edit | None:
        """Replace the model's points by a new prediction's; human points stay where they are.

        The model's positions, visibility, sigma and review flags are all the new ones. Raises
        DoubtfulDetection (nothing changes) when ``doubt`` is set: an implausible detection
        never replaces points that are already there.
        """
        if doubt:
            raise DoubtfulDetection(doubt)
        landmarks = np.array(prediction.landmarks, dtype=float).reshape(self._positions.shape)
        shown = np.array(prediction.visible, dtype=bool)
        self._model = landmarks.copy()
        self._model_visible = shown.copy()
        self._model_review = np.array(prediction.review, dtype=bool)
        self.sigma = np.array(prediction.sigma, dtype=float)
        self.model_id = model_id
        model = np.flatnonzero([s != HUMAN for s in self._source])
        changed = model[
            (self._positions[model] != landmarks[model]).any(axis=1)
            | (self._visible[model] != shown[model])
        ]
        self.revision += 1
        if changed.size == 0:
            return None
        return self._edit("detect", changed, landmarks[changed], MODEL, shown[changed])

    def confirm(self) -> None:
        """A person keeps a doubtful detection as it is (e.g. pressed Save)."""
        if self.doubt is not None:
            self.doubt = None
            self.revision += 1

    def undo(self) -> Edit | None:
        """Revert the last edit (None when there is none)."""
        edit = self.history.undo()
        if edit is not None:
            self._set(edit.before)
        return edit

    def redo(self) -> Edit | None:
        """Re-apply the last undone edit (None when there is none)."""
        edit = self.history.redo()
        if edit is not None:
            self._set(edit.after)
        return edit

    # -- internals ----------------------------------------------------------------------------

    def _checked(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        indices = np.unique(np.asarray(list(indices), dtype=int))
        return indices[(indices >= 0) & (indices < len(self.names))]

    def _rows(self, indices: np.ndarray) -> PointRows:
        return PointRows(
            indices.copy(),
            self._positions[indices].copy(),
            tuple(self._source[i] for i in indices),
            self._visible[indices].copy(),
        )

    def _edit(
        self,
        label: str,
        indices: np.ndarray,
        positions: np.ndarray,
        source: str,
        visible: np.ndarray,
    ) -> Edit:
        after = PointRows(
            indices.copy(),
            np.array(positions, dtype=float),
            (source,) * indices.size,
            np.array(visible, dtype=bool),
        )
        edit = Edit(label, self._rows(indices), after)
        self.history.push(edit)
        self._set(after)
        if label != "detect":
            self.doubt = None  # a person worked on the points: they are theirs now
        return edit

    def _set(self, rows: PointRows) -> None:
        self._positions[rows.indices] = rows.positions
        for i, source in zip(rows.indices, rows.source, strict=True):
            self._source[i] = source
        self._visible[rows.indices] = rows.visible
        self.revision += 1


def _fill_hidden(points: np.ndarray, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Positions for NaN rows (not visible landmarks), so they can be shown and dragged.

    A hidden point goes where its visible neighbours in the landmark order suggest (linear
    interpolation per coordinate); with no visible point at all, the points are spread down
    the middle of the image (or of a 1 x 1 square when its size is unknown).
    """
    points = np.array(points, dtype=float)
    visible = np.isfinite(points).all(axis=1)
    if visible.all():
        return points
    if not visible.any():
        height, width = image_shape or (1, 1)
        rows = np.linspace(0.1 * height, 0.9 * height, len(points))
        return np.column_stack([rows, np.full(len(points), width / 2)])
    order = np.arange(len(points))
    for axis in (0, 1):
        points[~visible, axis] = np.interp(order[~visible], order[visible], points[visible, axis])
    return points
