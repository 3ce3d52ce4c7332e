"""Rendering: after detection the landmarks are drawn over the spine in the viewer's canvas."""

from __future__ import annotations

import numpy as np

from tests.ui.conftest import detect_and_wait, open_and_wait, truth


def _content_box(shot: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns of the canvas that the image covers (differs from the background)."""
    background = shot[0, 0, :3].astype(int)
    covered = np.abs(shot[..., :3].astype(int) - background).sum(axis=2) > 0
    rows, cols = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def test_screenshot_shows_points_over_the_spine(make_widget, spine_folder, qtbot):
    widget = make_widget(show=True)
    open_and_wait(qtbot, widget, spine_folder / "film1.png")
    detect_and_wait(qtbot, widget)
    viewer = widget.viewer
    viewer.reset_view()
    for layer in (widget.points_layer, widget.cobb_layer):
        layer.visible = False
    bare = viewer.screenshot(canvas_only=True, flash=False)
    widget.points_layer.visible = True
    with_points = viewer.screenshot(canvas_only=True, flash=False)
    assert bare.shape == with_points.shape

    top, bottom, left, right = _content_box(bare)
    changed = np.abs(with_points[..., :3].astype(int) - bare[..., :3].astype(int)).sum(axis=2) > 30
    rows, cols = np.nonzero(changed)
    assert rows.size > 200, "the points are not drawn"
    # canvas pixels -> image pixels (the image fills the content box)
    height, width = widget.image_layer.data.shape
    image_rows = (rows - top + 0.5) * height / (bottom - top)
    image_cols = (cols - left + 0.5) * width / (right - left)
    spine = truth(101)
    margin = 0.08 * height
    inside = (
        (image_rows > spine[:, 0].min() - margin)
        & (image_rows < spine[:, 0].max() + margin)
        & (image_cols > spine[:, 1].min() - margin)
        & (image_cols < spine[:, 1].max() + margin)
    )
    assert inside.mean() > 0.9, inside.mean()
    # the drawing is in the vertebra colours, not just an outline
    assert np.unique(with_points[changed][:, :3] // 32, axis=0).shape[0] > 8
