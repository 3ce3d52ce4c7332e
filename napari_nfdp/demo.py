"""The main job: napari opens a sample radiograph, the widget docked, landmarks detected.

``python -m napari_nfdp.demo [--image PATH] [--out results]``. With a display the viewer stays
open for you to correct points. Without one the same window is rendered on a virtual X
display (Xvfb) and the demo writes a screenshot, the landmarks CSV and the Cobb report, then
exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SAMPLE = Path("sample_data") / "spine_synthetic_01.png"
UNDER_XVFB = "NAPARI_NFDP_DEMO_XVFB"
WAIT_SECONDS = 300


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _rerun_under_xvfb(argv: Sequence[str]) -> int:
    """Run this demo again inside ``xvfb-run`` (off-screen rendering with Mesa)."""
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None:
        print("error: no display and no xvfb-run; install xvfb (make sysdeps)", file=sys.stderr)
        return 2
    cmd = [xvfb_run, "-a", "-s", "-screen 0 1920x1200x24", sys.executable, "-m", __spec__.name]
    return subprocess.call([*cmd, *argv, "--offscreen"], env={**os.environ, UNDER_XVFB: "1"})


def _sample_image(out: Path) -> Path:
    """The bundled sample film, or a synthetic one written to ``out`` when run elsewhere."""
    if SAMPLE.is_file():
        return SAMPLE
    from napari_nfdp._sample_data import SAMPLE_SEED
    from napari_nfdp.io.images import write_image
    from napari_nfdp.simulator import synthesize_spine

    return write_image(out / SAMPLE.name, synthesize_spine(SAMPLE_SEED).image)


def _wait(app, done, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish within {WAIT_SECONDS} s")
        app.processEvents()
        time.sleep(0.02)


def run(image: Path, out: Path, offscreen: bool) -> int:
    """Open ``image`` in napari with the widget, detect, and write the results to ``out``."""
    import napari
    from qtpy.QtGui import QTextDocument
    from qtpy.QtWidgets import QApplication

    from napari_nfdp.ui.widget import NFDPWidget

    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-nfdp demo")
    widget = NFDPWidget(viewer)
    viewer.window.add_dock_widget(widget, name="NFDP landmarks", area="right")
    viewer.window.resize(1800, 1150)
    widget.set_annotation_folder(out / "annotations")  # never write into the sample folder
    app = QApplication.instance()
    widget.open_path(image)
    _wait(app, lambda: not widget.busy, "opening the image")
    if widget.detect() is None:
        print(f"error: {widget.status.text()}", file=sys.stderr)
        return 1
    _wait(app, lambda: not widget.busy, "detection")
    print(widget.status.text())
    angles = QTextDocument()
    angles.setHtml(widget.angles_label.text())  # the label is rich text; the terminal is not
    print(angles.toPlainText())
    landmarks = widget.export_landmarks_csv(out / "landmarks.csv")
    report = widget.export_cobb_report(out / "cobb_angles.csv")
    shot = out / "screenshot.png"
    viewer.screenshot(path=str(shot), canvas_only=False, flash=False)
    print(f"wrote {landmarks}, {report} and {shot}")
    if offscreen:
        viewer.close()
        return 0
    napari.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m napari_nfdp.demo", description=__doc__)
    parser.add_argument("--image", type=Path, default=None, help="radiograph (default: sample)")
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--offscreen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not _has_display() and not os.environ.get(UNDER_XVFB):
        return _rerun_under_xvfb(argv)
    image = args.image or _sample_image(args.out)
    return run(image, args.out, offscreen=args.offscreen)


if __name__ == "__main__":
    sys.exit(main())
