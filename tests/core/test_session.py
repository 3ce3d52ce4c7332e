"""The landmark session: the one owner of a film's points, its rules and its undo history."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core.localizer import Prediction
from napari_nfdp.core.session import DoubtfulDetection, LandmarkSession, SessionError
from napari_nfdp.io.annotations import annotation_from_session, session_from_annotation

NAMES = tuple(f"P{i}" for i in range(6))


def _prediction(points, visible=None, review=None, sigma=1.0) -> Prediction:
    """A model's answer for the six points (all on the film and unflagged by default)."""
    visible = np.ones(6, bool) if visible is None else np.asarray(visible, bool)
    review = np.zeros(6, bool) if review is None else np.asarray(review, bool)
    return Prediction(np.asarray(points, float), np.full((6, 2), sigma), NAMES, visible, review)


def _session(doubt: str | None = None) -> LandmarkSession:
    points = np.arange(12, dtype=float).reshape(6, 2) * 10
    return LandmarkSession.from_prediction(_prediction(points), "v1", doubt)


def test_reads_are_copies():
    session = _session()
    positions = session.positions
    positions[0] = -1
    session.visible[0] = False
    assert session.positions[0, 0] == 0 and session.visible[0]


def test_move_to_records_only_moved_rows_as_human():
    session = _session()
    data = session.positions
    data[2] += 3
    edit = session.move_to(data)
    assert edit.label == "move P2" and list(edit.after.indices) == [2]
    assert session.source == ("model", "model", "human", "model", "model", "model")
    assert session.move_to(data) is None  # nothing moved since
    session.undo()
    np.testing.assert_allclose(session.positions[2], [40, 50])
    assert session.source[2] == "model"
    session.redo()
    np.testing.assert_allclose(session.positions[2], [43, 53])


def test_adding_or_deleting_points_is_refused():
    with pytest.raises(SessionError, match="cannot be added or deleted"):
        _session().move_to(np.zeros((5, 2)))


def test_merge_keeps_human_points_and_hidden_ones():
    session = _session()
    data = session.positions
    data[1] += 5
    session.move_to(data)
    session.toggle_visible([4])
    new = session.positions + 100
    session.merge_prediction(_prediction(new, sigma=2.0), "v2")
    np.testing.assert_allclose(session.positions[[0, 2, 3, 5]], new[[0, 2, 3, 5]])
    np.testing.assert_allclose(session.positions[1], data[1])  # a person's move stays
    assert not session.visible[4]  # a person's "not visible" stays
    assert session.model_id == "v2"
    session.undo()  # the detection is one edit
    np.testing.assert_allclose(session.positions[0], [0, 10])


def test_a_doubtful_detection_never_replaces_points_and_is_no_measurement():
    session = _session()
    before = session.positions
    with pytest.raises(DoubtfulDetection):
        session.merge_prediction(_prediction(before + 50), "v2", doubt="No spine found?")
    np.testing.assert_allclose(session.positions, before)
    doubtful = _session("No spine found?")
    assert not doubtful.is_measurement
    doubtful.toggle_visible([0])  # a person works on it: it is theirs now
    assert doubtful.is_measurement
    other = _session("No spine found?")
    other.confirm()
    assert other.is_measurement


def test_reset_and_reset_all():
    session = _session()
    data = session.positions
    data[[0, 3]] += 7
    session.move_to(data)
    session.toggle_visible([5])
    session.reset([0])
    assert session.source[0] == "model" and session.source[3] == "human"
    assert session.reset_all().label == "reset all"
    assert session.source == ("model",) * 6 and session.visible.all()
    assert session.reset_all() is None or len(session.changed_from_model()) == 0


def test_sidecar_round_trip_and_unknown_model_positions():
    session = _session()
    data = session.positions
    data[2] += 4
    session.move_to(data)
    session.toggle_visible([4])
    ann = annotation_from_session(session, "film.png", (100, 80), (0.2, 0.2))
    assert np.isnan(ann.points[4]).all() and ann.spacing == (0.2, 0.2)
    back = session_from_annotation(ann)
    np.testing.assert_allclose(back.points(), session.points())
    assert back.source == session.source and back.model_id == "v1"
    assert np.isfinite(back.positions).all()  # the hidden point has a place to be dragged from
    with pytest.raises(SessionError, match="not known"):
        back.reset([2])  # a person's point: where the model had it was not saved
    back.reset([0])  # a model point: known


def test_revision_counts_every_change():
    session = _session()
    start = session.revision
    session.toggle_visible([1])
    session.undo()
    session.redo()
    assert session.revision == start + 3


def test_all_hidden_human_points_are_kept_by_a_detection():
    session = LandmarkSession.from_saved(
        NAMES, np.full((6, 2), np.nan), ["human"] * 6, None, "v1", image_shape=(100, 40)
    )
    assert not session.visible.any()
    np.testing.assert_allclose(session.positions[:, 1], 20.0)  # down the middle, draggable
    assert session.merge_prediction(_prediction(np.ones((6, 2))), "v2") is None
    assert not session.visible.any() and np.isnan(session.points()).all()


def test_points_the_model_places_off_the_film_start_hidden():
    shown = np.array([True, True, True, True, False, False])
    session = LandmarkSession.from_prediction(_prediction(np.ones((6, 2)), visible=shown), "v1")
    np.testing.assert_array_equal(session.visible, shown)
    assert session.source == ("model",) * 6 and len(session.changed_from_model()) == 0
    assert np.isnan(session.points()[4:]).all()  # saved as missing
    session.toggle_visible([5])  # a person shows one anyway
    session.reset([5])  # and resets it: back to the model's call, off the film
    assert not session.visible[5]
    session.merge_prediction(_prediction(np.ones((6, 2))), "v2")
    assert session.visible.all()  # the new model places them all on the film


def test_the_models_review_flags_follow_its_detections():
    review = np.array([False, True, False, False, False, False])
    session = LandmarkSession.from_prediction(_prediction(np.ones((6, 2)), review=review), "v1")
    np.testing.assert_array_equal(session.model_review, review)
    session.merge_prediction(_prediction(np.ones((6, 2)), review=~review), "v2")
    np.testing.assert_array_equal(session.model_review, ~review)
