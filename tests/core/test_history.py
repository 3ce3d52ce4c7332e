"""The undo / redo command stack."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core.history import Edit, EditHistory, PointRows


def _edit(label: str, index: int = 0) -> Edit:
    rows = np.array([index])
    before = PointRows(rows, np.zeros((1, 2)), ("model",), np.array([True]))
    after = PointRows(rows, np.ones((1, 2)), ("human",), np.array([True]))
    return Edit(label, before, after)


def test_undo_redo_order_and_labels():
    history = EditHistory()
    assert history.undo() is None and history.redo() is None
    first, second = _edit("move A"), _edit("move B")
    history.push(first)
    history.push(second)
    assert history.undo_label == "move B" and history.redo_label is None
    assert history.undo() is second and history.undo() is first
    assert not history.can_undo and history.redo_label == "move A"
    assert history.redo() is first
    assert history.can_undo and history.can_redo


def test_a_new_edit_drops_the_undone_ones():
    history = EditHistory()
    history.push(_edit("a"))
    history.push(_edit("b"))
    history.undo()
    history.push(_edit("c"))
    assert not history.can_redo
    assert [history.undo().label, history.undo().label] == ["c", "a"]


def test_history_is_bounded_and_clearable():
    history = EditHistory(max_edits=3)
    for i in range(5):
        history.push(_edit(str(i)))
    labels = []
    while (edit := history.undo()) is not None:
        labels.append(edit.label)
    assert labels == ["4", "3", "2"]
    history.clear()
    assert not history.can_undo and not history.can_redo


def test_rows_must_agree():
    with pytest.raises(ValueError, match="same rows"):
        PointRows(np.array([0, 1]), np.zeros((1, 2)), ("model",), np.array([True]))
