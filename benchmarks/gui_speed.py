"""GUI responsiveness of the dock in a real napari viewer (run under a display or xvfb-run).

- warm Detect: from the click (``widget.detect()``) to the points and Cobb lines drawn (the
  worker's result applied and the canvas repainted), the model already loaded;
- Next: from the click to the next film shown with its restored annotation (read in a worker,
  put into the same layers);
- point move: one mid-drag move as napari makes it (the point moved in place, ``events.data``
  blocked, a redraw) to the Cobb overlay and panel updated; median over many moves.

Example::

    xvfb-run -a python benchmarks/gui_speed.py --films 4 --moves 200
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import fmt, log, markdown_table, provenance, provenance_markdown


def _wait(app, done, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the widget did not finish in time")
        app.processEvents()
        time.sleep(0.001)


def _drawn(app, widget) -> None:
    """Let Qt finish: pending events, then one repaint of the canvas."""
    app.processEvents()
    widget.viewer.window._qt_viewer.canvas.native.repaint()
    app.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--films", type=int, default=4, help="films in the stepped folder")
    parser.add_argument("--moves", type=int, default=200, help="mid-drag moves to time")
    parser.add_argument("--shape", type=int, nargs=2, default=(2500, 1000), help="film size")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_nfdp.io.images import write_image
    from napari_nfdp.simulator import synthesize_spine
    from napari_nfdp.ui.widget import NFDPWidget

    home = Path(tempfile.mkdtemp(prefix="nfdp-gui-speed-"))
    folder = home / "films"
    folder.mkdir()
    for i in range(args.films):
        write_image(folder / f"film{i}.png", synthesize_spine(i, shape=tuple(args.shape)).image)

    viewer = napari.Viewer(show=True)
    widget = NFDPWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    app = QApplication.instance()
    widget.open_path(folder)
    _wait(app, lambda: not widget.busy)

    detect_s = []
    for i in range(args.films):  # detect every film once (the first loads the model)
        start = time.perf_counter()
        widget.detect()
        _wait(app, lambda: not widget.busy)
        _drawn(app, widget)
        detect_s.append(time.perf_counter() - start)
        if i < args.films - 1:
            widget.next_image()
            _wait(app, lambda: not widget.busy)
            _drawn(app, widget)  # the new film is on screen before the next click
            time.sleep(0.5)
    step_s = []
    for delta in [-1] * (args.films - 1) + [+1] * (args.films - 1):
        start = time.perf_counter()
        (widget.next_image if delta > 0 else widget.previous_image)()
        _wait(app, lambda: not widget.busy)
        _drawn(app, widget)
        step_s.append(time.perf_counter() - start)
        assert widget.points_layer is not None, "the film's annotation was not restored"

    layer = widget.points_layer
    index = 4 * widget.cobb_result.curve("MT").upper
    layer.selected_data = {index}
    start_point = layer.data[index].copy()
    move_s = []
    rng = np.random.default_rng(0)
    for _ in range(args.moves):
        target = start_point + rng.normal(0, 5, 2)
        begin = time.perf_counter()
        with layer.events.data.blocker():  # as during a mouse drag
            layer._move({index}, target)
        move_s.append(time.perf_counter() - begin)
        app.processEvents()
    widget.autosaver.flush()

    rows = [
        [
            "warm Detect click -> points and Cobb drawn (median of films 2..)",
            "s",
            fmt(statistics.median(detect_s[1:])),
            "<= 0.3",
        ],
        ["first Detect (model load included)", "s", fmt(detect_s[0]), ""],
        [
            "Next / Previous -> film shown with its annotation (median)",
            "s",
            fmt(statistics.median(step_s)),
            "<= 0.5",
        ],
        [
            "point move -> Cobb overlay updated (median)",
            "ms",
            fmt(1000 * statistics.median(move_s)),
            "<= 16",
        ],
        ["point move, 95th percentile", "ms", fmt(1000 * float(np.percentile(move_s, 95))), ""],
    ]
    log(provenance_markdown(provenance()))
    log(f"films {args.films} of {args.shape[0]} x {args.shape[1]}, {args.moves} moves")
    log(markdown_table(["measure", "unit", "value", "target"], rows))
    viewer.close()


if __name__ == "__main__":
    main()
