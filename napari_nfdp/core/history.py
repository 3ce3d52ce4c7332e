"""Undo / redo of landmark edits (napari's Points layer keeps no history of its own).

An edit stores, for the rows it touched, the state before and after: position, source
("model" | "human") and visibility. Undo applies ``before``, redo applies ``after``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_EDITS = 500


@dataclass(frozen=True, eq=False)
class PointRows:
    """Some landmarks: ``indices`` (n,), ``positions`` (n, 2), ``source`` and ``visible``."""

    indices: np.ndarray
    positions: np.ndarray
    source: tuple[str, ...]
    visible: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.indices)
        if self.positions.shape != (n, 2) or len(self.source) != n or len(self.visible) != n:
            raise ValueError("indices, positions, source and visible must describe the same rows")


@dataclass(frozen=True, eq=False)
class Edit:
    """One undoable change: ``label`` says what it was ("move T5-top-left", "reset all", ...)."""

    label: str
    before: PointRows
    after: PointRows


class EditHistory:
    """A linear command stack: a new edit after some undos drops the undone edits."""

    def __init__(self, max_edits: int = MAX_EDITS) -> None:
        self._edits: list[Edit] = []
        self._position = 0  # number of edits currently applied
        self._max = max_edits

    def push(self, edit: Edit) -> None:
        """Record an edit that has just been applied."""
        del self._edits[self._position :]
        self._edits.append(edit)
        if len(self._edits) > self._max:
            del self._edits[0]
        self._position = len(self._edits)

    def undo(self) -> Edit | None:
        """The edit to revert (apply its ``before``), or None when there is nothing to undo."""
        if not self.can_undo:
            return None
        self._position -= 1
        return self._edits[self._position]

    def redo(self) -> Edit | None:
        """The edit to re-apply (apply its ``after``), or None when there is nothing to redo."""
        if not self.can_redo:
            return None
        self._position += 1
        return self._edits[self._position - 1]

    def clear(self) -> None:
        """Forget every edit (a new image, or a fresh detection)."""
        self._edits.clear()
        self._position = 0

    @property
    def can_undo(self) -> bool:
        return self._position > 0

    @property
    def can_redo(self) -> bool:
        return self._position < len(self._edits)

    @property
    def undo_label(self) -> str | None:
        """What undo would revert, for tooltips."""
        return self._edits[self._position - 1].label if self.can_undo else None

    @property
    def redo_label(self) -> str | None:
        """What redo would re-apply, for tooltips."""
        return self._edits[self._position].label if self.can_redo else None
